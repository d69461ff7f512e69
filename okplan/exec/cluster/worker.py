"""``okplan worker``: a supervisor that takes tasks from the master and runs each in one of its task
processes (one per slot, reused task after task: ``okplan/exec/pool.py``).

The supervisor holds the ZeroMQ socket: it says hello (one credit per slot), heartbeats, and forwards.
A TASK goes to an idle task process, with the job's functions (as the bytes the master sent) the first
time that process sees the job; the process reads its inputs from Redis, runs the task, writes the
output to Redis and answers DONE or FAILED, which the supervisor sends on. The supervisor never runs
user code, so a task that holds the GIL for minutes is alive as long as its supervisor heartbeats, and
a task that kills its process (``os._exit``, a signal, a segfault, the OOM killer) cannot take the
worker with it: the process is replaced at once and the task fails with reason ``crashed`` and the
real cause, which the master retries a bounded number of times.

``okplan worker`` itself is a keeper that restarts the supervisor if it dies (``keeper.py``);
``--no-restart`` runs the supervisor directly (``local-cluster`` keeps its workers itself).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import OrderedDict, deque
from typing import Any

import zmq

from ...log import get_logger
from ..pool import Outcome, TaskPool
from ..serialization import block_key
from . import protocol as P
from .keeper import EXIT_NO_RESTART, KeptProcess
from .parent import die_with_parent, watch_parent
from .security import HandshakeWatch, secure_client
from .slot import SlotRunner

log = get_logger(__name__)

#: jobs whose functions the supervisor and each task process keep (the master also says when a job ended)
_KEEP_JOBS = 8
#: a batch's DONE whose value is bigger than this goes alone (a DONES message stays far below the
#: master's message limit: at most 64 values of this size)
_BATCHED_VALUE = 64 << 10


class Worker:
    """A supervisor of ``slots`` task processes. ``run()`` serves until SIGTERM, the master refuses it,
    or the parent dies.

    >>> Worker("tcp://127.0.0.1:7077", "redis://127.0.0.1:6379/0", slots=2).run()   # doctest: +SKIP
    """

    def __init__(self, master: str, redis_url: str | None = None, secret: str | bytes | None = None,
                 name: str | None = None, heartbeat: float = 0.5, slots: int = 1, start_method: str | None = None):
        self.master = master
        self.secret = P.secret_bytes(secret)
        self.block_key = block_key(self.secret)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.heartbeat = heartbeat
        self.slots = max(1, slots)
        self.redis_url = redis_url
        self.pool = TaskPool(self.slots, functools.partial(SlotRunner, self.name, self.block_key),
                             start_method=start_method,
                             name=f"okplan worker {self.name}")
        self.queue: deque[dict] = deque()                         # TASK bodies waiting for a free slot
        self.job_blobs: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()
        #: per slot: the jobs its process has loaded, jobs it should forget, and which process that was
        self.loaded: list[OrderedDict[str, None]] = [OrderedDict() for _ in range(self.slots)]
        self.drops: list[list[str]] = [[] for _ in range(self.slots)]
        self.generations = [0] * self.slots
        #: per slot: when its batch runs out of budget (the unstarted tasks then go back) and its tag, or None
        self.batches: list[tuple[float, dict] | None] = [None] * self.slots
        self.zctx = zmq.Context()
        self.sock = self.zctx.socket(zmq.DEALER)
        # a restarted worker with the same --name must not collide with its predecessor's identity
        ident = self.name if name is None else f"{self.name}-{uuid.uuid4().hex[:4]}"
        self.sock.setsockopt(zmq.IDENTITY, ident.encode())
        self.sock.setsockopt(zmq.LINGER, 1000)
        secure_client(self.sock, self.secret)
        self.watch = HandshakeWatch(self.sock, self.secret)
        self.sock.connect(master)
        self._stopped = False

    # -- messages -----------------------------------------------------------------------------------
    def _send(self, kind: str, body: dict | None = None, blobs: tuple | list = (), flags: int = 0) -> None:
        try:
            self.sock.send_multipart(P.pack(kind, body, blobs), flags | zmq.NOBLOCK, copy=False)
        except zmq.Again:
            # no connection to queue on: the master refused the handshake (the watch says why at once)
            # or its queue is full; a lost reply is re-run by the master like a lost worker's task
            if not flags & zmq.NOBLOCK:
                log.warning("okplan worker %s: could not send %s to the master (not connected)", self.name, kind)

    def _hello(self) -> None:
        self._send(P.WORKER_HELLO, {"name": self.name, "host": socket.gethostname(), "pid": os.getpid(),
                                    "slots": self.slots, "versions": P.ADVERTISED})

    def _heartbeat(self) -> None:
        # never block the loop on a master that is away: a heartbeat that cannot go is just skipped
        self._send(P.HEARTBEAT, flags=zmq.NOBLOCK)

    # -- serving ------------------------------------------------------------------------------------
    def run(self) -> int:
        """Serve; the exit code: 0, or ``EXIT_NO_RESTART`` when the master refused this worker."""
        code = 0
        self.pool.start()
        self._hello()
        next_beat = time.monotonic()
        try:
            while not self._stopped:
                now = time.monotonic()
                if now >= next_beat:
                    self._heartbeat()
                    next_beat = now + self.heartbeat
                wait = next_beat - now
                restart = self.pool.next_restart()
                if restart is not None:
                    wait = min(wait, restart)
                due = min((b[0] for b in self.batches if b is not None), default=None)
                if due is not None:
                    wait = min(wait, max(0.0, due - now))
                events = zmq.zmq_poll([(self.sock, zmq.POLLIN), (self.watch.mon, zmq.POLLIN)]
                                      + [(fd, zmq.POLLIN) for fd in self.pool.fds()], max(1, int(wait * 1000)))
                refused = self.watch.refused()  # a handshake the master refused: wrong or missing secret
                if refused is not None:
                    self._refused(refused)
                    code = EXIT_NO_RESTART
                    break
                if not self._drain():
                    code = EXIT_NO_RESTART
                    break
                ready = {fd for fd, _ in events if isinstance(fd, int)}
                for outcome in self.pool.collect(ready) if ready else ():
                    self.batches[outcome.slot] = None
                    self._report(outcome)
                if due is not None:
                    self._hand_back_late()
                if restart is not None:
                    self.pool.restart_due()
                self._dispatch()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()
        return code

    def _drain(self) -> bool:
        """Handle every message waiting on the socket; False when the master refused this worker."""
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return True
            reason = P.refusal_reason(frames)
            if reason is not None:  # another version, or a hello the master could not accept
                self._refused(reason)
                return False
            try:
                msg = P.unpack(frames)
            except P.ProtocolError as e:
                log.warning("dropped a message", extra={"worker": self.name, "why": str(e)})
                continue
            if msg.kind == P.TASK:
                b = msg.body
                for job_id in b.get("ended", ()):  # jobs that ended since the master last said
                    self._forget(job_id)
                if len(msg.blobs) >= 2:
                    self.job_blobs[b["job_id"]] = (msg.blobs[0], msg.blobs[1])
                    while len(self.job_blobs) > _KEEP_JOBS:
                        self.job_blobs.popitem(last=False)
                self.queue.append(b)
            elif msg.kind == P.JOB_END:
                self._forget(msg.body["job_id"])
            elif msg.kind == P.WAKE:
                self.pool.wake()  # a job is coming: its task processes wake while its client plans
            elif msg.kind == P.RESET:
                self._hello()
            elif msg.kind == P.WELCOME:
                log.info("worker joined", extra={"worker": self.name, "master": self.master,
                                                 "slots": self.slots})
                if self.redis_url is None:
                    self.redis_url = msg.body["redis"]
            elif msg.kind == P.ERROR:
                self._refused(str(msg.body.get("message")))
                return False

    def _refused(self, reason: str) -> None:
        log.error("okplan worker %s: the master at %s refused this worker: %s", self.name, self.master, reason)

    def _forget(self, job_id: str) -> None:
        self.job_blobs.pop(job_id, None)
        for slot, loaded in enumerate(self.loaded):
            if job_id in loaded:
                del loaded[job_id]
                self.drops[slot].append(job_id)

    def _dispatch(self) -> None:
        """Give queued TASK messages to idle task processes: a message's tasks (a batch of short
        tasks of one stage, or one task) go to one process as one request."""
        for slot in self.pool.idle_slots():
            if not self.queue:
                return
            b = self.queue.popleft()
            tasks = [[b["partition"], b["attempt"]], *b.get("more", ())]
            tag = {"job_id": b["job_id"], "stage": b["stage"], "tasks": tasks, "budget": b.get("budget")}
            if self.redis_url is None:
                self._fail_all(tag, {"reason": "infra", "message": "worker has no Redis URL yet"})
                continue
            if self.generations[slot] != self.pool.generation(slot):  # a new process: it knows no job
                self.generations[slot] = self.pool.generation(slot)
                self.loaded[slot].clear()
                self.drops[slot].clear()
            loaded, job_id = self.loaded[slot], b["job_id"]
            blobs: tuple = ()
            if job_id in loaded:
                loaded.move_to_end(job_id)
            else:
                blobs = self.job_blobs.get(job_id, ())
                if not blobs:
                    # not a failure: the master sends the functions again without counting an attempt
                    self._fail_all(tag, {"reason": "infra", "resend_job": True,
                                         "message": f"job {job_id} arrived without its functions"})
                    continue
                loaded[job_id] = None
                while len(loaded) > _KEEP_JOBS:
                    self.drops[slot].append(loaded.popitem(last=False)[0])
            header = {**tag, "redis": self.redis_url, "drop": self.drops[slot]}
            self.drops[slot] = []
            turns = 0
            if len(tasks) > 1 and tag["budget"]:
                # a batch: its tasks take turns, and those not started by the budget's end go back
                header["turns"], turns = True, len(tasks)
                self.batches[slot] = (time.monotonic() + tag["budget"], tag)
            self.pool.submit(slot, header, blobs, tag=tag, turns=turns)

    def _hand_back_late(self) -> None:
        """Batches past their budget: the tasks their process has not started go back to the master
        (``requeue``, ``late``: no attempt counted), even while one of them still runs, so that other
        slots run them instead of waiting behind it."""
        now = time.monotonic()
        for slot, batch in enumerate(self.batches):
            if batch is None or now < batch[0]:
                continue
            self.batches[slot] = None
            tag = batch[1]
            n = self.pool.revoke(slot)
            if not n:
                continue
            tasks = tag["tasks"]
            tag["revoked"] = n
            self._fail_all({**tag, "tasks": tasks[len(tasks) - n:]},
                           {"reason": "infra", "requeue": True, "late": True,
                            "message": "not run: its batch took longer than expected"})

    def _fail_all(self, tag: dict, why: dict) -> None:
        for p, attempt in tag["tasks"]:
            self._send(P.FAILED, {"job_id": tag["job_id"], "stage": tag["stage"], "partition": p,
                                  "attempt": attempt, **why})

    def _report(self, o: Outcome) -> None:
        """Send the master what became of a request's tasks: the process's own replies (one per task
        it ran; tasks of a batch after a failed one come back to be queued again), or how the process
        died: the task it was running is blamed (the last a batch took a turn for, else the first; the
        master then runs that stage's tasks one by one), the rest not handed back yet are queued again
        without counting an attempt."""
        if o.reply is not None:
            replies, blobs = o.reply
            dones: list[dict] = []
            sizes: list[int] = []
            values: list[bytes] = []
            at = 0
            for kind, body, n in replies:
                if kind == P.DONE and len(replies) > 1 and (not n or len(blobs[at]) <= _BATCHED_VALUE):
                    # a batch's DONEs go in one DONES message, their values end to end in one blob
                    dones.append(body)
                    sizes.append(len(blobs[at]) if n else -1)
                    values += blobs[at:at + n]
                else:
                    self._send(kind, body, blobs[at:at + n])
                at += n
                _log_outcome(self.name, kind, body)
            if dones:
                self._send(P.DONES, {"items": dones, "sizes": sizes}, [b"".join(values)] if values else [])
            return
        tag = o.tag
        tasks = tag["tasks"][:len(tag["tasks"]) - tag.get("revoked", 0)]  # the rest went back already
        if not tasks:
            return
        # the task that ran when the process died: the last one it took a turn for (a batch), else the first
        at = max(0, min(len(tasks), o.turns_taken or 1) - 1)
        (first, attempt), rest = tasks[at], tasks[:at] + tasks[at + 1:]
        ident = {"job_id": tag["job_id"], "stage": tag["stage"], "partition": first, "attempt": attempt}
        if o.died is not None:
            body = {**ident, "reason": "crashed", "message": o.died.describe(),
                    "exitcode": o.died.exitcode, "signal": o.died.signal}
        else:
            body = {**ident, "reason": "infra", "message": f"the task process failed: {o.error}"}
        self._send(P.FAILED, body)
        _log_outcome(self.name, P.FAILED, body)
        if rest:
            self._fail_all({**tag, "tasks": rest}, {"reason": "infra", "requeue": True,
                                                     "message": "not run: an earlier task of its batch failed"})

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self._send(P.BYE, flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            pass
        self.pool.stop()
        self.watch.close()
        self.sock.close(200)
        self.zctx.term()


def _log_outcome(worker: str, kind: str, body: dict) -> None:
    """A task's end in the worker's log: every task at debug, failures at info (user code) or warn."""
    if kind == P.DONE and not log.isEnabledFor(logging.DEBUG):
        return
    fields = {"job": body.get("job_id"), "stage": body.get("stage"), "task": body.get("partition"),
              "worker": worker, "attempt": body.get("attempt")}
    if kind == P.DONE:
        m = body.get("metrics") or {}
        log.debug("task done", extra={**fields, "seconds": round(m.get("seconds", 0.0), 6),
                                      "records_in": m.get("records_in"), "records_out": m.get("records_out")})
    elif body.get("reason") == "user":
        log.info("task failed in user code", extra={**fields, "why": body.get("message")})
    elif not body.get("resend_job") and not body.get("requeue"):
        log.warning("task failed", extra={**fields, "reason": body.get("reason"), "why": body.get("message")})


def serve(master: str, redis_url: str | None, slots: int = 1, secret: str | bytes | None = None,
          parent_pid: int | None = None, name: str | None = None, restart: bool = True) -> int:
    """``okplan worker``: a supervisor of ``slots`` task processes, itself restarted if it dies (unless
    ``restart`` is false). Returns the exit code."""
    signal.signal(signal.SIGTERM, _exit_on_signal)  # so that the finally blocks stop the children
    watch_parent(parent_pid)
    if not restart:
        return Worker(master, redis_url, secret, name, slots=slots).run()
    cmd = [sys.executable, "-m", "okplan", "worker", "--master", master, "--slots", str(slots), "--no-restart",
           "--parent-pid", str(os.getpid())]
    if redis_url:
        cmd += ["--redis", redis_url]
    if name:
        cmd += ["--name", name]
    env = dict(os.environ, PYTHONHASHSEED="0")
    if secret:  # by the environment, never the command line (``ps`` shows that to every user)
        env["OKPLAN_SECRET"] = secret.decode() if isinstance(secret, bytes) else secret
    kept = KeptProcess(lambda: subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent), "okplan worker", log)
    try:
        while not kept.gave_up:
            kept.check()
            time.sleep(0.2)
        return kept.proc.returncode or 0
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        kept.stop()


def _exit_on_signal(signum: int, frame: Any) -> None:
    raise SystemExit(0)
