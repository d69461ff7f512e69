"""``okplan worker``: a long-lived process that takes tasks from the master, one at a time.

It says hello (and so asks for its first task), then for every TASK reads the inputs from Redis, runs
the shared task runner, writes the output to Redis and answers DONE or FAILED, which also asks for the
next task. A job's functions arrive with its first task on this worker and are unpickled once. A
thread with a socket of its own heartbeats, so the master notices a worker that died or hangs.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

import zmq

from ...log import get_logger
from .. import accumulators
from ..metrics import TaskMetrics
from ..profile import profiled
from ..serialization import BlockIntegrityError, block_key, deserialize, loads_function, serialize
from ..task import run_task
from . import protocol as P
from . import sidefiles
from .blocks import RedisBlocks, TaskMeter, write_output
from .parent import watch_parent
from .remote_errors import pack_exception
from .spec import JobSpec
from .store import BlockStore, MissingBlockError, StoreUnavailableError

log = get_logger(__name__)

#: jobs whose functions a worker keeps (the master also says when a job ended)
_KEEP_JOBS = 8


class _JobUnknown(Exception):
    """A task of a job whose functions this worker no longer has: the master sends them again."""


class _LoadedJob:
    __slots__ = ("spec", "stages", "action", "acc_registry")

    def __init__(self, spec: JobSpec, stages: dict, action: Any, acc_registry: dict):
        self.spec = spec
        self.stages = stages
        self.action = action
        self.acc_registry = acc_registry


class Worker:
    """One task slot. ``run()`` serves until the master says stop, SIGTERM, or the parent dies.

    >>> Worker("tcp://127.0.0.1:7077", "redis://127.0.0.1:6379/0").run()   # doctest: +SKIP
    """

    def __init__(self, master: str, redis_url: str | None = None, secret: str | bytes | None = None,
                 name: str | None = None, heartbeat: float = 0.5):
        self.master = master
        self.secret = P.secret_bytes(secret)
        self.block_key = block_key(self.secret)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.heartbeat = heartbeat
        self.zctx = zmq.Context()
        self.sock = self.zctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.IDENTITY, self.name.encode())
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.connect(master)
        self.redis_url = redis_url
        self.store: BlockStore | None = BlockStore(redis_url) if redis_url else None
        self.jobs: OrderedDict[str, _LoadedJob] = OrderedDict()
        self._stop = threading.Event()

    # -- messages -----------------------------------------------------------------------------------
    def _send(self, kind: str, body: dict | None = None, blobs: tuple = ()) -> None:
        self.sock.send_multipart(P.pack(kind, body, blobs, self.secret), copy=False)

    def _hello(self) -> None:
        self._send(P.WORKER_HELLO, {"name": self.name, "host": socket.gethostname(), "pid": os.getpid(),
                                    "slots": 1})

    def _heartbeats(self) -> None:
        hb = self.zctx.socket(zmq.DEALER)
        hb.setsockopt(zmq.IDENTITY, self.name.encode() + b"!hb")
        hb.setsockopt(zmq.LINGER, 0)
        hb.connect(self.master)
        frames = P.pack(P.HEARTBEAT, {}, (), self.secret)
        try:
            while not self._stop.wait(self.heartbeat):
                hb.send_multipart(frames)
                while hb.poll(0):
                    hb.recv_multipart()  # the master only answers unknown heartbeats (with RESET)
        finally:
            hb.close(0)

    # -- serving ------------------------------------------------------------------------------------
    def run(self) -> None:
        threading.Thread(target=self._heartbeats, name="okplan-heartbeat", daemon=True).start()
        self._hello()
        try:
            while not self._stop.is_set():
                if not self.sock.poll(1000):
                    continue
                try:
                    msg = P.unpack(self.sock.recv_multipart(copy=False), self.secret)
                except P.ProtocolError as e:
                    log.warning("dropped a message", extra={"worker": self.name, "why": str(e)})
                    continue
                if msg.kind == P.TASK:
                    self._send(*self.handle_task(msg))
                elif msg.kind == P.JOB_END:
                    if self.jobs.pop(msg.body["job_id"], None) is not None:
                        log.debug("job ended", extra={"job": msg.body["job_id"], "worker": self.name})
                elif msg.kind == P.RESET:
                    self._hello()
                elif msg.kind == P.WELCOME:
                    log.info("worker joined", extra={"worker": self.name, "master": self.master})
                    if self.store is None:
                        self.redis_url = msg.body["redis"]
                        self.store = BlockStore(self.redis_url)
                elif msg.kind == P.ERROR:
                    log.error("the master refused this worker", extra={"worker": self.name,
                                                                         "why": msg.body.get("message")})
                    break
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
            log.info("worker stopped", extra={"worker": self.name})

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        try:
            self._send(P.BYE)
        except zmq.ZMQError:
            pass
        self.sock.close(200)
        self.zctx.term()

    # -- one task -----------------------------------------------------------------------------------
    def _load(self, job_id: str, blobs: list) -> _LoadedJob:
        job = self.jobs.get(job_id)
        if job is not None:
            self.jobs.move_to_end(job_id)
            return job
        if len(blobs) < 2:
            raise _JobUnknown(f"job {job_id} arrived without its functions (this worker forgot them)")
        spec = deserialize(blobs[0])
        for p in spec.get("sys_path", ()):
            if p not in sys.path and os.path.isdir(p):
                sys.path.append(p)
        if self.store is not None:  # addFile/addPyFile: before the functions, which may import them
            sidefiles.install(self.store, spec["client"], self.block_key)
        # Accumulators unpickle into the registry begin_task() opens; the job keeps that registry so
        # each of its tasks reports the updates of the copies its functions hold.
        registry = accumulators.begin_task()
        stages, action = loads_function(blobs[1])
        job = _LoadedJob(spec, stages, action, registry)
        self.jobs[job_id] = job
        while len(self.jobs) > _KEEP_JOBS:
            self.jobs.popitem(last=False)
        return job

    def handle_task(self, msg: P.Message) -> tuple[str, dict, tuple]:
        """Run the task of a TASK message; the reply's kind, body and blobs (logged)."""
        kind, body, blobs = self._task(msg)
        b = msg.body
        fields = {"job": b["job_id"], "stage": b["stage"], "task": b["partition"], "worker": self.name,
                  "attempt": b["attempt"]}
        if kind == P.DONE:
            if log.isEnabledFor(logging.DEBUG):
                m = body["metrics"]
                log.debug("task done", extra={**fields, "seconds": round(m["seconds"], 6),
                                              "records_in": m["records_in"], "records_out": m["records_out"]})
        elif body.get("reason") == "user":
            log.info("task failed in user code", extra={**fields, "why": body.get("message")})
        else:
            log.warning("task failed", extra={**fields, "reason": body.get("reason"), "why": body.get("message")})
        return kind, body, blobs

    def _task(self, msg: P.Message) -> tuple[str, dict, tuple]:
        b = msg.body
        ident = {"job_id": b["job_id"], "stage": b["stage"], "partition": b["partition"], "attempt": b["attempt"]}
        t_start = time.perf_counter()
        try:
            job = self._load(b["job_id"], msg.blobs)
        except _JobUnknown as e:
            return P.FAILED, {**ident, "reason": "infra", "message": str(e), "resend_job": True}, ()
        except BlockIntegrityError as e:  # a forged side-file manifest
            return P.FAILED, {**ident, "reason": "integrity", "message": str(e)}, ()
        except Exception as e:
            e.add_note(f"okplan: while unpickling the job's functions on worker {self.name}: the modules "
                       f"they come from must be importable on the workers")
            body, blob = pack_exception(e, self.name)
            return P.FAILED, {**body, "reason": "user", **ident}, (blob,)  # the task, not the note, says where
        if self.store is None:
            return P.FAILED, {**ident, "reason": "infra", "message": "worker has no Redis URL yet"}, ()
        stage = job.stages[b["stage"]]
        meter = TaskMeter(self.block_key)
        blocks = RedisBlocks(self.store, job.spec, meter)
        accumulators.begin_task(job.acc_registry)
        operators: dict[str, float] = {}
        try:
            t0 = time.perf_counter()
            c0 = time.thread_time()
            if job.spec.get("profile"):
                with profiled(stage, job.action) as operators:
                    result = run_task(stage, b["partition"], blocks, job.action)
            else:
                result = run_task(stage, b["partition"], blocks, job.action)
            t_task = time.perf_counter() - t0
            io_in = meter.io_seconds()
            stored, inline = write_output(self.store, job.spec, stage, b["partition"], result.value, meter)
            updates = accumulators.task_updates()
            # plain data, pickled in the try: a value that cannot be pickled is the user's error
            acc = serialize(updates) if updates else b""
        except MissingBlockError as e:
            accumulators.task_updates()
            return P.FAILED, {**ident, "reason": "missing", "missing": e.missing, "message": str(e)}, ()
        except StoreUnavailableError as e:
            accumulators.task_updates()
            return P.FAILED, {**ident, "reason": "infra", "message": str(e)}, ()
        except BlockIntegrityError as e:
            accumulators.task_updates()
            return P.FAILED, {**ident, "reason": "integrity", "message": str(e)}, ()
        except (Exception, SystemExit) as e:
            accumulators.task_updates()
            body, blob = pack_exception(e, self.name)
            return P.FAILED, {**body, "reason": "user", **ident}, (blob,)  # the task, not the note, says where
        metrics = TaskMetrics(
            result.records_in, result.records_out, time.perf_counter() - t_start, time.thread_time() - c0,
            {"compute": max(0.0, t_task - io_in), "serialize": meter.serialize, "compress": meter.compress,
             "store": meter.store},
            meter.bytes_raw, meter.bytes_compressed, meter.bytes_read, meter.bytes_written, operators=operators,
        ).to_wire()
        return P.DONE, {**ident, "metrics": metrics, "acc": acc, "stored": stored}, (inline,) if inline else ()


def serve(master: str, redis_url: str | None, slots: int = 1, secret: str | None = None,
          parent_pid: int | None = None, name: str | None = None) -> None:
    """``okplan worker``: one slot serves in this process; N slots start N single-slot workers."""
    if slots <= 1:
        watch_parent(parent_pid)
        Worker(master, redis_url, secret, name).run()
        return
    watch_parent(parent_pid)
    cmd = [sys.executable, "-m", "okplan", "worker", "--master", master, "--slots", "1",
           "--parent-pid", str(os.getpid())]
    if redis_url:
        cmd += ["--redis", redis_url]
    env = dict(os.environ, PYTHONHASHSEED="0")
    if secret:
        env["OKPLAN_SECRET"] = secret
    children = [subprocess.Popen(cmd + (["--name", f"{name}-{i}"] if name else []), env=env)
                for i in range(slots)]
    signal.signal(signal.SIGTERM, _exit_on_signal)  # so that the finally below stops the slots
    try:
        for c in children:
            c.wait()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        for c in children:
            if c.poll() is None:
                c.terminate()
        for c in children:
            try:
                c.wait(5)
            except subprocess.TimeoutExpired:
                c.kill()


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(0)
