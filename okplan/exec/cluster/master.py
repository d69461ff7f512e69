"""``okplan master``: schedules the tasks of clients' jobs on workers.

One ROUTER socket serves clients and workers alike. A worker's hello and every DONE/FAILED give it one
credit; the master hands a task to the worker that has waited longest (load balancing), remembers which
worker runs what, and re-queues a task whose worker died (no heartbeat for ``heartbeat_timeout``) or
could not reach Redis. A task that finds an input block missing re-opens the task that wrote it
(lineage). Only small messages pass through here: data goes worker -> Redis -> worker or client.

No message can stop it: a message is checked (size, frames, header, fields) before any handler sees
it, every handler runs guarded, and what is dropped is logged. It never unpickles anything.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
import traceback
from collections import OrderedDict, deque
from typing import Any

import zmq

from ..task import task_place
from . import protocol as P
from ...log import get_logger
from ..metrics import TaskMetrics
from .dashboard import Dashboard
from .jobstate import JobRun, StageRun
from .security import bind_policy, secure_server
from .spec import SpecError, decode_spec
from .snapshot import job_view, master_view
from .store import BlockStore, Keys, StoreUnavailableError, redacted

log = get_logger(__name__)

_TICK = 0.25
_ALIVE_EVERY = 0.5  # also carries the job's progress to the client
#: ended jobs the dashboard still shows
_RECENT_JOBS = 50
#: finished jobs whose keys a late report of a given-up attempt deletes again
_FORGOTTEN_JOBS = 256
#: seconds without a client heartbeat (sent every second) before its job is cancelled: generous, since
#: a client busy unpickling a large result holds the GIL and its heartbeat thread waits
CLIENT_TIMEOUT = 10.0


class _Worker:
    __slots__ = ("ident", "name", "host", "pid", "slots", "last_seen", "running", "jobs", "tasks_done", "batch_of",
                 "ended", "woken")

    def __init__(self, ident: bytes, body: dict[str, Any]):
        self.ident = ident
        self.name: str = body.get("name") or ident.decode(errors="replace")
        self.host = body.get("host")
        self.pid = body.get("pid")
        self.slots: int = max(1, int(body.get("slots", 1)))
        self.last_seen = time.monotonic()
        self.running: set[tuple[str, int, int]] = set()
        self.jobs: set[str] = set()
        self.tasks_done = 0
        #: task -> the shared count of its batch's tasks still out: a batch holds one credit, returned
        #: with the last of its tasks (single tasks are not in here)
        self.batch_of: dict[tuple[str, int, int], list[int]] = {}
        #: jobs that ended whose functions it still holds: told with its next TASK, else at the next tick
        #: (a JOB_END of its own right at a job's end woke every worker while the client was finishing)
        self.ended: list[str] = []
        self.woken = 0.0  # when it was last sent a WAKE


#: a batch of short tasks aims at this many seconds of work (measured on the stage's finished tasks)
_BATCH_SECONDS = 0.02
#: most tasks in one TASK message
_MAX_BATCH = 64
#: records per task of an input small enough to batch before any task was timed
_SMALL_TASK_RECORDS = 5000
#: records of a whole stage small enough to go to one slot as one batch before any task was timed
_ONE_BATCH_RECORDS = 10_000
#: seconds before an unknown worker that has not said hello is told again
_RESET_AGAIN = 5.0
#: a worker is sent at most one WAKE per this many seconds (however many clients ask)
_WAKE_EVERY = 0.01


class _DropLog:
    """Logs dropped messages to stderr: at most ``lines`` per ``window`` seconds, then how many more,
    so that a flood of junk cannot flood the log."""

    def __init__(self, lines: int = 10, window: float = 10.0):
        self.lines, self.window = lines, window
        self.started = -window
        self.shown = self.hidden = 0
        self.total = 0

    def __call__(self, text: str) -> None:
        self.total += 1
        now = time.monotonic()
        if now - self.started >= self.window:
            if self.hidden:
                log.warning(f"... and {self.hidden} more dropped messages")
            self.started, self.shown, self.hidden = now, 0, 0
        if self.shown < self.lines:
            self.shown += 1
            log.warning(text)
        else:
            self.hidden += 1


class Master:
    """The scheduler. ``serve()`` runs until SIGTERM/SIGINT or the parent process dies.

    >>> Master("tcp://127.0.0.1:7077", "redis://127.0.0.1:6379/0").serve()   # doctest: +SKIP
    """

    def __init__(self, bind: str, redis_url: str, secret: str | bytes | None = None,
                 heartbeat_timeout: float = 5.0, max_attempts: int = 4, no_worker_timeout: float = 60.0,
                 client_timeout: float = CLIENT_TIMEOUT, max_crashes: int = 3, insecure: bool = False,
                 max_message_bytes: int = P.MAX_MESSAGE_BYTES):
        self.secret = P.secret_bytes(secret)
        warning = bind_policy(bind, self.secret, insecure)  # raises ConfigurationError when refused
        if warning:
            log.warning(warning)
        self.max_message_bytes = max_message_bytes
        self.log_drop = _DropLog()
        self.redis_url = redis_url
        self.store = BlockStore(redis_url)
        self.heartbeat_timeout = heartbeat_timeout
        self.client_timeout = client_timeout
        self.max_attempts = max_attempts
        #: attempts of one task that may kill their process before the job fails
        self.max_crashes = max_crashes
        self.no_worker_timeout = no_worker_timeout
        self.zctx = zmq.Context()
        self.sock = self.zctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        # a peer that sends a larger frame is disconnected before the frame is in memory
        self.sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self.auth = secure_server(self.zctx, self.sock, self.secret)
        # Sending to a peer whose connection dropped fails at once instead of vanishing: that is how a
        # killed worker is noticed within a tick, long before its heartbeats are missed.
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.SNDHWM, 0)  # never block on a slow client
        self.endpoint = _bind(self.sock, bind)
        self.workers: dict[bytes, _Worker] = {}
        #: unknown workers told to say hello, and when: told once (again after 5 s if no hello came), so
        #: a busy worker does not pile up RESETs and then say hello once per RESET
        self.reset_sent: dict[bytes, float] = {}
        self.idle: deque[bytes] = deque()     # one entry per credit, longest waiting first
        self.jobs: dict[str, JobRun] = {}     # insertion order = submission order (FIFO scheduling)
        #: keys of recently forgotten jobs: an attempt the master had given up on (its worker presumed
        #: dead) may still write its output after the job's keys were deleted; its late report deletes
        #: them again instead of leaving them until they expire
        self.forgotten: OrderedDict[str, list[str]] = OrderedDict()
        self.no_workers_since: float | None = time.monotonic()
        self._running = True
        self.started = time.monotonic()
        self.redis_shown = redacted(redis_url)
        #: the web dashboard (``serve`` starts one); it reads views the loop publishes, never live state
        self.dashboard: Dashboard | None = None
        self.recent_jobs: deque[dict] = deque(maxlen=_RECENT_JOBS)
        #: jobs with results not yet sent to their client
        self.outbox: list[JobRun] = []

    # -- the loop ----------------------------------------------------------------------------------------
    def serve(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        last_tick = time.monotonic()
        try:
            while self._running:
                if self.sock.poll(int(_TICK * 1000)):
                    for _ in range(1000):  # drain what is there, then schedule once
                        try:
                            frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._dispatch_message(frames)
                    self._guarded(self._flush_results)
                    self._guarded(self._schedule)
                now = time.monotonic()
                if now - last_tick >= _TICK:
                    last_tick = now
                    self._guarded(self._tick, now)
                    self._guarded(self._schedule)
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Close the socket, the authenticator and the Redis connection."""
        if self.dashboard is not None:
            self.dashboard.close()
        self.sock.close(0)
        if self.auth is not None:
            self.auth.stop()
        self.zctx.term()
        self.store.close()

    def _guarded(self, fn: Any, *args: Any) -> None:
        """Run a step of the loop; a bug in it is logged, never the end of the master."""
        try:
            fn(*args)
        except Exception:
            self.log_drop(f"internal error in {fn.__name__} (the loop goes on):\n{traceback.format_exc()}")

    def stop(self) -> None:
        self._running = False

    def _send(self, ident: bytes, kind: str, body: dict | None = None, blobs: tuple = ()) -> bool:
        """False when the peer is not connected (ROUTER_MANDATORY tells at once, e.g. after a SIGKILL)."""
        return self._send_frames(ident, P.pack(kind, body, blobs))

    def _send_frames(self, ident: bytes, frames: list) -> bool:
        try:
            self.sock.send_multipart([ident, *frames], copy=False)
            return True
        except zmq.ZMQError:  # EHOSTUNREACH: the peer is gone; its loss is handled where it matters
            return False

    def _refuse(self, ident: bytes, reason: str) -> None:
        self.log_drop(f"refused {_peer(ident)}: {reason}")
        self._send_frames(ident, P.refusal(reason))

    def _dispatch_message(self, frames: list) -> None:
        """Check one message and hand it to its handler; whatever is wrong with it, drop it and log."""
        ident = frames[0].bytes
        size = sum(len(f) for f in frames)
        if len(frames) > P.MAX_FRAMES + 1 or size > self.max_message_bytes:
            self.log_drop(f"dropped a message of {len(frames) - 1} frames, {size} bytes from {_peer(ident)} "
                          f"(limit {P.MAX_FRAMES} frames, {self.max_message_bytes} bytes: --max-message-bytes)")
            return
        try:
            msg = P.unpack(frames[1:])
        except P.ProtocolError as e:
            if "version" in str(e):
                self._refuse(ident, str(e))  # a peer of another okplan: it should hear why, once
            else:
                self.log_drop(f"dropped a message from {_peer(ident)}: {e}")
            return
        try:
            P.check(msg)
        except P.ProtocolError as e:
            if msg.kind in (P.CLIENT_HELLO, P.WORKER_HELLO):
                self._refuse(ident, str(e))
            else:
                self.log_drop(f"dropped a message from {_peer(ident)}: {e}")
            return
        try:
            _HANDLERS[msg.kind](self, ident, msg)
        except Exception:
            self.log_drop(f"error handling {msg.kind} from {_peer(ident)} (message dropped):\n"
                          f"{traceback.format_exc()}")

    # -- workers -----------------------------------------------------------------------------------------
    def _on_worker_hello(self, ident: bytes, msg: P.Message) -> None:
        why = P.version_mismatch(msg.body.get("versions"), f"worker {msg.body['name']}", "the master")
        if why is not None:
            self._refuse(ident, why)
            return
        self.reset_sent.pop(ident, None)
        old = self.workers.get(ident)
        if old is not None:
            # RESETs that queued up while the worker was busy each bring a hello; it is known already
            # (identities are per process), so neither its tasks nor its credit change
            old.last_seen = time.monotonic()
            return
        w = self.workers[ident] = _Worker(ident, msg.body)
        self.idle.extend([ident] * w.slots)
        log.info("worker joined", extra={"worker": w.name, "worker_host": w.host, "worker_pid": w.pid,
                                         "slots": w.slots, "workers": len(self.workers)})
        self.no_workers_since = None
        self._send(ident, P.WELCOME, {"redis": self.redis_url, "versions": P.ADVERTISED})

    def _on_heartbeat(self, ident: bytes, msg: P.Message) -> None:
        main = ident[:-3] if ident.endswith(b"!hb") else ident
        w = self.workers.get(main)
        if w is None:
            now = time.monotonic()
            if now - self.reset_sent.get(main, -_RESET_AGAIN) >= _RESET_AGAIN:
                self.reset_sent[main] = now  # we restarted, or declared it dead: it must say hello again
                self._send(main, P.RESET)
        else:
            w.last_seen = time.monotonic()

    def _on_bye(self, ident: bytes, msg: P.Message) -> None:
        w = self.workers.get(ident)
        if w is not None:
            self._lose_worker(w, "stopped")

    def _lose_worker(self, w: _Worker, why: str) -> None:
        """Forget ``w`` and put the tasks it was running back in the queue (bounded)."""
        self.workers.pop(w.ident, None)
        fields = {"worker": w.name, "why": why, "running": len(w.running), "workers": len(self.workers)}
        if why == "stopped":
            log.info("worker left", extra=fields)
        else:
            log.warning("worker lost", extra=fields)
        if w.ident in self.idle:
            self.idle = deque(i for i in self.idle if i != w.ident)
        if not self.workers and self.no_workers_since is None:
            self.no_workers_since = time.monotonic()
        for job_id, sid, p in w.running:
            job = self.jobs.get(job_id)
            if job is None:
                continue
            stage = job.stages[sid]
            entry = stage.running.get(p)
            if entry is None or entry[0] != w.ident:
                continue
            del stage.running[p]
            if job.state != "running":
                self._maybe_forget(job)
                continue
            if p in stage.done:
                continue
            job.retried(stage)
            n = stage.attempts[p] = stage.attempts.get(p, 0) + 1
            if n >= self.max_attempts:
                self._fail(job, "lost", f"{_stage_name(stage)} failed: partition {p} lost its worker {n} times "
                                        f"(last: {w.name}, which {why})", stage.id, p)
            else:
                log.info("task retried", extra={"job": job.id, "stage": stage.id, "task": p, "worker": w.name,
                                                "attempt": n, "why": f"its worker {why}"})
                stage.pending.appendleft(p)
        w.running.clear()
        w.batch_of.clear()

    # -- clients -----------------------------------------------------------------------------------------
    def _on_client_hello(self, ident: bytes, msg: P.Message) -> None:
        why = P.version_mismatch(msg.body.get("versions"), f"client {_peer(ident)}", "the master")
        if why is not None:
            self._refuse(ident, why)
            return
        self._send(ident, P.WELCOME, {"redis": self.redis_url, "workers": len(self.workers),
                                      "slots": sum(w.slots for w in self.workers.values()),
                                      "hosts": sorted({str(w.host) for w in self.workers.values()}),
                                      "dashboard": self.dashboard.url if self.dashboard is not None else None,
                                      "versions": P.ADVERTISED, "max_message_bytes": self.max_message_bytes})

    def _on_submit(self, ident: bytes, msg: P.Message) -> None:
        job_id = msg.body["job_id"]
        if job_id in self.jobs:
            self.log_drop(f"dropped a second submit of job {job_id} from {_peer(ident)}")
            return
        spec_blob, job_blob = msg.blobs[0], msg.blobs[1]
        try:
            spec = decode_spec(spec_blob)  # data only: nothing in it is ever unpickled here
            if spec["job_id"] != job_id:
                raise SpecError(f"the spec is of job {spec['job_id']}, the message of job {job_id}")
        except SpecError as e:
            self.log_drop(f"refused job {job_id} of {_peer(ident)}: {e}")
            self._send(ident, P.JOB_FAILED, {"job_id": job_id, "reason": "bad_spec", "message": str(e),
                                             "stage": None, "partition": None, "acc": [], "metrics": {}})
            return
        job = JobRun(ident, spec, spec_blob, job_blob)
        self.jobs[job.id] = job
        log.info("job submitted", extra={"job": job.id, "app": spec.get("app"), "client": spec.get("client"),
                                         "stages": len(job.order), "tasks": sum(len(s.needed) for s in job.order)})
        if job.complete:
            self._finish(job)

    def _on_client_heartbeat(self, ident: bytes, msg: P.Message) -> None:
        jobs = msg.body.get("jobs")
        if not isinstance(jobs, list):
            return
        now = time.monotonic()
        for job_id in jobs:
            job = self.jobs.get(job_id) if isinstance(job_id, str) else None
            if job is not None and job.client == ident:
                job.client_seen = now

    def _on_wake(self, ident: bytes, msg: P.Message) -> None:
        """A client is about to plan a job: wake the worker its first tasks will go to (the one with a
        free slot that has waited longest) now, so that it and its task processes are running by the
        time they come, instead of waking then (after a few ms idle, a process takes hundreds of
        microseconds to respond). Only that one: on a machine with few cores, waking every worker
        would slow down the client's planning more than it saves. Bounded: at most one WAKE per worker
        per ``_WAKE_EVERY``, whatever the clients send."""
        now = time.monotonic()
        for wid in self.idle:
            w = self.workers.get(wid)
            if w is None:
                continue
            if now - w.woken >= _WAKE_EVERY:
                w.woken = now
                self._send(w.ident, P.WAKE)
            return

    def _on_cancel(self, ident: bytes, msg: P.Message) -> None:
        job = self.jobs.get(msg.body["job_id"])
        if job is not None and job.state == "running" and job.client == ident:
            job.state = "cancelled"
            log.info("job cancelled", extra={"job": job.id, "why": "the client stopped reading (e.g. take)"})
            self._ended(job)
            self._maybe_forget(job)

    # -- task results ------------------------------------------------------------------------------------
    def _task_returned(self, ident: bytes, msg: P.Message) -> tuple[JobRun | None, StageRun | None, float]:
        """Bookkeeping common to DONE and FAILED; the job and stage when the job still wants it."""
        b = msg.body
        key = (b["job_id"], b["stage"], b["partition"])
        w = self.workers.get(ident)
        if w is not None:
            w.last_seen = time.monotonic()
            if key in w.running:
                w.running.discard(key)
                batch = w.batch_of.pop(key, None)
                if batch is not None:
                    batch[0] -= 1
                if batch is None or batch[0] == 0:
                    self.idle.append(ident)
        job = self.jobs.get(b["job_id"])
        stage = job.stages.get(b["stage"]) if job is not None else None
        p = b["partition"]
        if job is None and b["job_id"] in self.forgotten:
            self._delete(self.forgotten[b["job_id"]])
        if job is None or stage is None or not 0 <= p < stage.info["n"]:
            return None, None, 0.0
        started = 0.0
        entry = stage.running.get(p)
        mine = entry is not None and entry[0] == ident
        if mine:
            started = entry[2]
            del stage.running[p]
        if job.state != "running":
            self._maybe_forget(job)
            return None, None, 0.0
        if p in stage.done:
            return None, None, 0.0
        if not mine:
            # re-queued after its worker was presumed dead; it is back after all (a task this worker
            # still ran is in no queue: the scan, linear in the queue, is only for this case)
            try:
                stage.pending.remove(p)
            except ValueError:
                pass
        return job, stage, started

    def _on_done(self, ident: bytes, msg: P.Message) -> None:
        b = msg.body
        job, stage, started = self._task_returned(ident, msg)
        if job is None or stage is None:
            if b.get("stored") and b["job_id"] not in self.jobs:
                self._delete([Keys(b["job_id"]).result(b["partition"])])
            return
        p = b["partition"]
        stage.done.add(p)
        w = self.workers.get(ident)
        t = TaskMetrics.from_wire(b["metrics"])
        now = time.monotonic()
        worker = w.name if w else ident.decode(errors="replace")
        if w is not None:
            w.tasks_done += 1
        job.record(stage, worker, t, started or now - t.seconds, now)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("task done", extra={"job": job.id, "stage": stage.id, "task": p, "worker": worker,
                                          "seconds": round(t.seconds, 6), "records_in": t.records_in,
                                          "records_out": t.records_out})
        if stage.complete:
            m = stage.metrics
            m.finish()
            log.info("stage finished", extra={"job": job.id, "stage": stage.id, "kind": m.kind, "tasks": m.tasks,
                                              "seconds": round(m.seconds, 6), "records_in": m.records_in,
                                              "records_out": m.records_out, "bytes": m.bytes_compressed})
        if b.get("acc"):
            job.acc.append(b["acc"])
        if stage is job.result_stage:
            # results go to the client in one RESULT per job and pass of the loop (``_flush_results``)
            if not job.outbox:
                self.outbox.append(job)
            job.outbox.append((p, b["stored"], msg.blobs[0] if msg.blobs and not b["stored"] else None))
        if job.complete:
            self._finish(job)

    def _on_dones(self, ident: bytes, msg: P.Message) -> None:
        """The DONEs of a batch's tasks, in one message (one receive and check instead of one each)."""
        for done in P.split_dones(msg):
            self._on_done(ident, done)

    def _on_failed(self, ident: bytes, msg: P.Message) -> None:
        b = msg.body
        job, stage, _ = self._task_returned(ident, msg)
        if job is None or stage is None:
            return
        p = b["partition"]
        reason = b["reason"]
        if reason == "user":
            self._fail(job, "user", b.get("message", ""), stage.id, p, b, msg.blobs[:1])
            return
        if reason == "integrity":
            # a forged or altered block: running the task again would read the same bytes
            self._fail(job, "integrity", f"{_stage_name(stage)} partition {p}: {b.get('message')}", stage.id, p)
            return
        if b.get("requeue"):
            # a task of a batch that never started (the task before it failed or killed the process,
            # or the batch ran past its budget): behind the others, so that the one that failed runs
            # first, alone
            stage.late = stage.late or bool(b.get("late"))
            stage.pending.append(p)
            return
        if b.get("resend_job"):
            # the worker dropped this job's functions (it keeps a few jobs'): not a failure, so no
            # attempt is counted; the task goes back first and the functions ride along again
            w = self.workers.get(ident)
            if w is not None:
                w.jobs.discard(job.id)
            stage.pending.appendleft(p)
            return
        job.retried(stage)
        if reason == "crashed":
            self._crashed(job, stage, p, ident, b.get("message", "died"))
            return
        log.info("task retried", extra={"job": job.id, "stage": stage.id, "task": p, "reason": reason,
                                        "why": b.get("message")})
        if reason == "missing":
            self._recompute(job, stage, p, b.get("missing") or [])
            return
        n = stage.attempts[p] = stage.attempts.get(p, 0) + 1
        job.infra_failures += 1
        # bounded per task and per job, so a Redis that is down fails the job in seconds, not minutes
        if n >= self.max_attempts or job.infra_failures > 2 * self.max_attempts or not self.store.reachable():
            self._fail(job, reason, f"{_stage_name(stage)} failed after {job.infra_failures} failed attempts, "
                                    f"the last: {b.get('message')}", stage.id, p)
        else:
            stage.pending.append(p)  # at the back: give the failing resource a moment

    def _crashed(self, job: JobRun, stage: StageRun, p: int, ident: bytes, cause: str) -> None:
        """The task's process died (the worker has replaced it): retry, bounded, then fail the job."""
        n = stage.crashes[p] = stage.crashes.get(p, 0) + 1
        w = self.workers.get(ident)
        where = task_place(_stage_name(stage), p, stage.info.get("labels", ()))
        log.warning(f"{where}: the task's process {cause}", extra={
            "job": job.id, "stage": stage.id, "task": p, "worker": w.name if w else None, "attempt": n,
            "max_attempts": self.max_crashes})
        if n >= self.max_crashes:
            self._fail(job, "crashed", f"{where}: the task's process {cause} {n} times", stage.id, p)
        else:
            stage.pending.appendleft(p)

    def _recompute(self, job: JobRun, stage: StageRun, p: int, missing: list) -> None:
        """Re-run the tasks that wrote the missing blocks, then ``p`` again."""
        for kind, ident, index in missing:
            if kind == "source":
                self._fail(job, "source_lost", f"the input data of {_stage_name(stage)} ({ident}) is gone "
                                               f"from Redis", stage.id, p)
                return
            writer = job.shuffle_writer.get(ident) if kind == "shuffle" else job.cache_writer.get(ident)
            if writer is None:
                # a cache or a shuffle kept by an earlier job: its client plans a recomputation
                lost = job.spec.get("kept", {}).get(ident, ident) if kind == "shuffle" else ident
                self._fail(job, "cache_lost", f"cached dataset {lost} is gone from Redis (evicted, expired "
                                              f"or Redis restarted); run the action again to recompute it",
                           stage.id, p, {"cache_id": lost})
                return
            wstage = job.stages[writer]
            if wstage.reopen(index):
                wstage.recomputes += 1
                if wstage.recomputes > self.max_attempts * max(1, wstage.info["n"]):
                    self._fail(job, "lost", f"{_stage_name(wstage)} lost its output too often "
                                            f"({wstage.recomputes} recomputations); is Redis evicting keys?",
                               wstage.id, index)
                    return
        n = stage.attempts[p] = stage.attempts.get(p, 0) + 1
        if n > self.max_attempts * 2:
            self._fail(job, "lost", f"{_stage_name(stage)} partition {p}: inputs went missing {n} times",
                       stage.id, p)
            return
        stage.pending.appendleft(p)

    # -- ending jobs ---------------------------------------------------------------------------------
    def _ended(self, job: JobRun, error: str | None = None) -> None:
        """Keep an ended job's view for the dashboard."""
        job.ended = time.monotonic()
        job.error = error
        if self.dashboard is not None:
            self.recent_jobs.append(job_view(job, job.ended))

    def _publish(self) -> None:
        if self.dashboard is not None:
            self.dashboard.publish(master_view(self))

    def _flush_results(self) -> None:
        for job in self.outbox:
            self._send_results(job)
        self.outbox.clear()

    def _send_results(self, job: JobRun) -> None:
        """One RESULT with the result partitions of ``job`` that finished since the last one (and the
        accumulator updates so far): a message per partition cost the master a send each."""
        if not job.outbox:
            return
        (p, stored, _), rest = job.outbox[0], job.outbox[1:]
        body = {"job_id": job.id, "partition": p, "stored": stored, "acc": job.acc}
        if rest:
            body["more"] = [[q, q_stored] for q, q_stored, _ in rest]
        self._send(job.client, P.RESULT, body, [b for _, _, b in job.outbox if b is not None])
        job.outbox = []
        job.acc = []

    def _finish(self, job: JobRun) -> None:
        job.state = "done"
        # the keys go first, so the client never sees a finished job's keys; then the client hears at
        # once: the dashboard's view and the workers' JOB_END wait until the JOB_DONE is on its way
        forgotten = self._maybe_forget(job, tell_workers=False)
        metrics = job.metrics()
        body = {"job_id": job.id, "metrics": metrics.to_wire(), "acc": job.acc,
                "slots": sum(w.slots for w in self.workers.values())}
        blobs: list = []
        if job.outbox:
            # the last results ride in the JOB_DONE: one message to the client instead of two
            body["results"] = [[p, stored] for p, stored, _ in job.outbox]
            blobs = [b for _, _, b in job.outbox if b is not None]
            job.outbox = []
        self._send(job.client, P.JOB_DONE, body, blobs)
        if forgotten:
            self._job_ended_on_workers(job)
        self._ended(job)
        result = metrics.stages[job.result_stage.id]
        log.info("job finished", extra={"job": job.id, "app": job.spec.get("app"),
                                        "seconds": round(metrics.seconds, 6), "records": result.records_out,
                                        "tasks": sum(m.tasks for m in metrics.stages.values()),
                                        "retries": metrics.retries})
        job.acc = []

    def _fail(self, job: JobRun, reason: str, message: str, stage: int | None = None, partition: int | None = None,
              extra: dict | None = None, blobs: Any = ()) -> None:
        if job.state != "running":
            return
        job.state = "failed"
        job.outbox = []
        self._ended(job, message)
        metrics = job.metrics()
        body = {"job_id": job.id, "reason": reason, "message": message, "stage": stage, "partition": partition,
                "acc": job.acc, "metrics": metrics.to_wire()}
        log.info("job failed", extra={"job": job.id, "app": job.spec.get("app"), "reason": reason,
                                      "why": message, "stage": stage, "task": partition,
                                      "seconds": round(metrics.seconds, 6)})
        if extra:
            body.update({k: v for k, v in extra.items() if k not in ("job_id", "stage", "partition")})
            body["error_stage"] = extra.get("stage")
        self._maybe_forget(job)
        self._send(job.client, P.JOB_FAILED, body, tuple(blobs))
        job.acc = []

    def _maybe_forget(self, job: JobRun, tell_workers: bool = True) -> bool:
        """Once no task of a finished job runs any more, delete its keys and (unless ``tell_workers``
        is false: the caller does it later) tell workers; True when it did."""
        if job.state == "running" or job.running_tasks:
            return False
        for s in job.order:
            s.pending.clear()
        self.jobs.pop(job.id, None)
        keys = job.keys_to_delete(job.state == "done")
        self._delete(keys)
        self.forgotten[job.id] = keys
        while len(self.forgotten) > _FORGOTTEN_JOBS:
            self.forgotten.popitem(last=False)
        if tell_workers:
            self._job_ended_on_workers(job)
        return True

    def _job_ended_on_workers(self, job: JobRun) -> None:
        """Have the workers that loaded ``job``'s functions drop them (with their next TASK, or at the
        next tick: ``_tell_ended``)."""
        for w in self.workers.values():
            if job.id in w.jobs:
                w.jobs.discard(job.id)
                w.ended.append(job.id)

    def _tell_ended(self) -> None:
        """JOB_END for the ended jobs no TASK has carried to their workers since the last tick."""
        for w in list(self.workers.values()):
            ended, w.ended = w.ended, []
            for job_id in ended:
                self._send(w.ident, P.JOB_END, {"job_id": job_id})

    def _delete(self, keys: list[str]) -> None:
        try:
            self.store.delete(keys)
        except StoreUnavailableError as e:
            log.warning("could not delete job keys (they expire)", extra={"why": str(e)})

    # -- scheduling ----------------------------------------------------------------------------------
    def _schedule(self) -> None:
        while self.idle:
            w = self.workers.get(self.idle[0])
            if w is None:
                self.idle.popleft()
                continue
            found = None
            for job in self.jobs.values():
                if job.state == "running":
                    found = job.next_task()
                    if found is not None:
                        break
            if found is None:
                return
            self.idle.popleft()
            stage, p = found
            if not stage.announced:
                stage.announced = True
                log.info("stage started", extra={"job": job.id, "stage": stage.id, "kind": stage.metrics.kind,
                                                 "tasks": len(stage.needed)})
            tasks = [p]
            for _ in range(self._batch_size(job, stage) - 1):
                tasks.append(stage.pending.popleft())
            self._send_tasks(w, job, stage, tasks)

    def _batch_size(self, job: JobRun, stage: StageRun) -> int:
        """How many tasks of ``stage`` one TASK message carries: one, unless the stage's tasks are short
        (those finished so far took under ``_BATCH_SECONDS`` on average) and plenty are pending, so that
        a batch costs one round trip instead of one per task while every slot still gets several
        batches (load balancing). A stage whose task killed its process runs tasks one by one, so that
        the next crash is blamed on the task that caused it."""
        m = stage.metrics
        if stage.crashes:
            return 1
        slots = sum(w.slots for w in self.workers.values())
        if m.tasks == 0:
            # nothing timed yet: a stage over a small input whose records are known (parallelized
            # data, ranges, the outputs of earlier stages and jobs) has short tasks. Up to ``_ONE_BATCH_RECORDS`` in all, the whole stage goes to one slot as one batch
            # (a tiny job costs one worker's round trip: on a busy machine a second worker's costs
            # more than it saves); above, every slot gets one batch at once. A batch that runs past
            # its budget hands its unstarted tasks back, and the stage is then no longer batched
            # until its tasks are timed (e.g. tasks that wait for each other).
            records = stage.info.get("records")
            if records is not None and stage.info.get("plus_parents"):
                # and what the job's own earlier stages wrote for it (they are complete by now)
                records += sum(job.stages[p].metrics.records_out for p in stage.info["parents"])
            if stage.late or records is None or records > _SMALL_TASK_RECORDS * max(1, len(stage.needed)):
                return 1
            if records <= _ONE_BATCH_RECORDS:
                return max(1, min(_MAX_BATCH, len(stage.pending) + 1))
            return max(1, min(_MAX_BATCH, len(stage.pending) + 1, -(-len(stage.needed) // max(1, slots))))
        per_task = m.task_seconds / m.tasks
        # + 1: the task already taken from the queue
        most = min(_MAX_BATCH, (len(stage.pending) + 1) // (2 * max(1, slots)))
        return max(1, min(most, int(_BATCH_SECONDS / max(per_task, 1e-6))))

    def _send_tasks(self, w: _Worker, job: JobRun, stage: StageRun, tasks: list[int]) -> None:
        """One TASK message with ``tasks`` (partitions of ``stage``): one credit of ``w``."""
        now = time.monotonic()
        attempts = [stage.attempts.get(p, 0) for p in tasks]
        debug = log.isEnabledFor(logging.DEBUG)
        batch = [len(tasks)] if len(tasks) > 1 else None
        for p, attempt in zip(tasks, attempts):
            if debug:
                log.debug("task sent", extra={"job": job.id, "stage": stage.id, "task": p, "worker": w.name,
                                              "attempt": attempt, "batch": len(tasks)})
            stage.running[p] = (w.ident, attempt, now)
            key = (job.id, stage.id, p)
            w.running.add(key)
            if batch is not None:
                w.batch_of[key] = batch
        blobs: tuple = ()
        if job.id not in w.jobs:
            w.jobs.add(job.id)
            blobs = job.blobs  # a job's functions go to each worker once
        body = {"job_id": job.id, "stage": stage.id, "partition": tasks[0], "attempt": attempts[0]}
        if w.ended:
            body["ended"], w.ended = w.ended, []  # JOB_ENDs ride along
        if len(tasks) > 1:
            body["more"] = [[p, a] for p, a in zip(tasks[1:], attempts[1:])]
            # a batch whose tasks turn out slower than expected stops early and hands the rest back
            # (``requeue``), so it never holds tasks that other slots, or a cancellation, should have
            body["budget"] = 2 * _BATCH_SECONDS
        if not self._send(w.ident, P.TASK, body, blobs):
            # never delivered, so not an attempt: a worker that vanished before its first task
            # (a peer that said hello and hung up) must not use up the task's attempts
            w.jobs.discard(job.id)
            for p in reversed(tasks):
                key = (job.id, stage.id, p)
                w.running.discard(key)
                w.batch_of.pop(key, None)
                del stage.running[p]
                stage.pending.appendleft(p)
            self._lose_worker(w, "disconnected")

    def _tick(self, now: float) -> None:
        for ident, told in list(self.reset_sent.items()):
            if now - told >= _RESET_AGAIN:
                del self.reset_sent[ident]  # bounded: a flood of made-up identities is forgotten
        self._publish()
        self._tell_ended()
        for w in list(self.workers.values()):
            if now - w.last_seen > self.heartbeat_timeout:
                self._lose_worker(w, f"sent no heartbeat for {now - w.last_seen:.1f}s")
            elif not self._send(w.ident, P.HEARTBEAT):
                # idle ones too: a killed worker is forgotten within a tick, before a task is sent to it
                self._lose_worker(w, "disconnected")
        for job in list(self.jobs.values()):
            if job.state != "running":
                continue
            if now - job.client_seen > self.client_timeout:
                # the client died (kill -9, host gone) or hangs: nobody will read the results
                why = f"its client sent no heartbeat for {now - job.client_seen:.1f}s"
                log.warning("job cancelled", extra={"job": job.id, "why": why})
                job.state = "cancelled"
                self._ended(job, why)
                self._maybe_forget(job)
                continue
            if now - job.last_alive >= _ALIVE_EVERY:
                job.last_alive = now
                self._send(job.client, P.JOB_ALIVE, {"job_id": job.id, "progress": job.progress()})
            if not self.workers and self.no_workers_since is not None \
                    and now - max(self.no_workers_since, job.started) > self.no_worker_timeout:
                self._fail(job, "no_workers", f"no worker has been connected to the master for "
                                              f"{self.no_worker_timeout:.0f}s; start some with `okplan worker`")


def _peer(ident: bytes) -> str:
    """A peer's identity, printable whatever its bytes."""
    return repr(ident[:64])[1:]


def _stage_name(stage: StageRun) -> str:
    return f"stage {stage.id}"


def _bind(sock: zmq.Socket, bind: str) -> str:
    """Bind and return the real endpoint (port 0 or * picks a free port)."""
    if bind.endswith(":0"):
        bind = bind[:-2] + ":*"
    sock.bind(bind)
    return sock.getsockopt(zmq.LAST_ENDPOINT).decode()


_HANDLERS = {
    P.WORKER_HELLO: Master._on_worker_hello,
    P.HEARTBEAT: Master._on_heartbeat,
    P.BYE: Master._on_bye,
    P.DONE: Master._on_done,
    P.DONES: Master._on_dones,
    P.FAILED: Master._on_failed,
    P.CLIENT_HELLO: Master._on_client_hello,
    P.SUBMIT: Master._on_submit,
    P.CANCEL: Master._on_cancel,
    P.WAKE: Master._on_wake,
    P.CLIENT_HEARTBEAT: Master._on_client_heartbeat,
}


def serve(bind: str, redis_url: str, secret: str | bytes | None = None, parent_pid: int | None = None,
          heartbeat_timeout: float = 5.0, also_kill: list[int] | None = None,
          client_timeout: float = CLIENT_TIMEOUT, dashboard: tuple[str, int] | None = None,
          dashboard_token: str | None = None, dashboard_tries: int = 1, insecure: bool = False,
          max_message_bytes: int = P.MAX_MESSAGE_BYTES) -> None:
    """``okplan master``: bind, start the dashboard at ``dashboard`` (host, port; the next ports up to
    ``dashboard_tries`` when taken), say where on stdout (the launcher reads that line), serve."""
    from .parent import watch_parent

    m = Master(bind, redis_url, secret, heartbeat_timeout=heartbeat_timeout, client_timeout=client_timeout,
               insecure=insecure, max_message_bytes=max_message_bytes)
    if dashboard is not None:
        m.dashboard = _start_dashboard(dashboard, dashboard_token, dashboard_tries)
    watch_parent(parent_pid, also_kill)
    shown = f", dashboard {m.dashboard.url}" if m.dashboard is not None else ""
    print(f"okplan master listening on {m.endpoint} (redis {redacted(redis_url)}{shown})", flush=True)
    log.info("master started", extra={"endpoint": m.endpoint, "redis": redacted(redis_url),
                                      "dashboard": m.dashboard.url if m.dashboard is not None else None})
    if not m.store.reachable(1.0):
        log.warning(f"cannot reach Redis at {redacted(redis_url)}: jobs will fail until it is up; check --redis "
                    f"(or OKPLAN_REDIS / REDIS_HOST and REDIS_PORT)", extra={"redis": redacted(redis_url)})
    m._publish()
    m.serve()
    log.info("master stopped", extra={"endpoint": m.endpoint})


def _start_dashboard(where: tuple[str, int], token: str | None, tries: int) -> Dashboard | None:
    host, port = where
    public = socket.gethostname() if host in ("0.0.0.0", "::", "") else None
    last: OSError = OSError("no port tried")
    for i in range(max(1, tries)):
        try:
            return Dashboard(host, port + i if port else 0, token, public)
        except OSError as e:
            last = e
    if tries > 1:
        log.warning("no dashboard: ports taken", extra={"dashboard": f"{host}:{port}..{port + tries - 1}",
                                                        "why": str(last)})
        return None
    raise OSError(f"cannot serve the dashboard on {host}:{port}: {last.strerror or last}")
