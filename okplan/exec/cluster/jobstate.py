"""What the master knows about a running job: per stage, the partitions done, pending and running,
attempts, and the metrics the workers reported. Pure bookkeeping, no sockets and no Redis."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from ..metrics import JobMetrics, StageMetrics, TaskMetrics
from .spec import JobSpec
from .store import Keys

_KIND_NAMES = {"shuffle": "shuffle map", "mat": "materialize", "result": "result"}


class StageRun:
    """One stage of a running job."""

    __slots__ = ("info", "id", "needed", "done", "pending", "running", "attempts", "crashes", "recomputes",
                 "metrics", "announced", "late")

    def __init__(self, info: dict[str, Any], partitions: list[int] | None):
        self.info = info
        self.id: int = info["id"]
        self.needed = list(dict.fromkeys(partitions)) if partitions is not None else list(range(info["n"]))
        self.done: set[int] = set()
        self.pending: deque[int] = deque(self.needed)
        self.running: dict[int, tuple[bytes, int, float]] = {}   # partition -> (worker, attempt, started)
        self.attempts: dict[int, int] = {}
        self.crashes: dict[int, int] = {}     # partition -> attempts whose process died
        self.recomputes = 0
        self.metrics = StageMetrics(self.id, _KIND_NAMES[info["kind"]])
        self.announced = False  # "stage started" was logged
        #: a batch of it ran past its budget before any task was timed: not batched until timed
        self.late = False

    @property
    def complete(self) -> bool:
        return len(self.done) >= len(self.needed)

    def reopen(self, partition: int) -> bool:
        """Compute ``partition`` again (its output was lost). False when it is already on its way."""
        self.done.discard(partition)
        if partition in self.running or partition in self.pending:
            return False
        self.pending.appendleft(partition)
        return True


class JobRun:
    """A job from SUBMIT to the moment its last task (including stragglers) reported back."""

    def __init__(self, client: bytes, spec: JobSpec, spec_blob: bytes, job_blob: bytes):
        self.id: str = spec["job_id"]
        self.client = client
        self.spec = spec
        self.blobs = (spec_blob, job_blob)
        self.state = "running"          # running | done | failed | cancelled
        self.started = time.monotonic()
        self.submitted_at = time.time()
        self.ended: float | None = None
        self.error: str | None = None
        self.last_alive = self.started
        self.client_seen = self.started   # the client's last heartbeat naming this job
        self.acc: list[bytes] = []      # accumulator updates not yet sent to the client
        #: result partitions not yet sent to the client: (partition, stored, encoded value or None)
        self.outbox: list[tuple[int, bool, Any]] = []
        self.order: list[StageRun] = []
        self.stages: dict[int, StageRun] = {}
        self.shuffle_writer: dict[int, int] = {}
        self.cache_writer: dict[str, int] = {}
        for info in spec["stages"]:
            is_result = info["kind"] == "result"
            s = StageRun(info, spec["partitions"] if is_result else None)
            self.order.append(s)
            self.stages[s.id] = s
            if info.get("reused"):
                s.done.update(s.pending)  # kept by an earlier job: nothing to run, no writer to re-run
                s.pending.clear()
            elif info["kind"] == "shuffle":
                self.shuffle_writer[info["shuffle_id"]] = s.id
            elif info["kind"] == "mat":
                self.cache_writer[info["cache_id"]] = s.id
        self.result_stage = self.order[-1]
        self.tasks_per_worker: dict[str, int] = {}
        self.retries = 0
        self.infra_failures = 0
        self.bytes_written = 0
        self.bytes_read = 0

    @property
    def complete(self) -> bool:
        return all(s.complete for s in self.order)

    @property
    def running_tasks(self) -> int:
        return sum(len(s.running) for s in self.order)

    def next_task(self) -> tuple[StageRun, int] | None:
        """The next pending task whose parent stages are complete (stages in plan order)."""
        for s in self.order:
            if s.pending and all(self.stages[p].complete for p in s.info["parents"]):
                return s, s.pending.popleft()
        return None

    def record(self, stage: StageRun, worker: str, t: TaskMetrics, started: float, ended: float) -> None:
        """Fold one successful task's metrics in; ``started``/``ended``: when the master sent it and
        heard back (the time around the task is its ``schedule`` phase)."""
        t.phases["schedule"] = max(0.0, ended - started - t.seconds)
        stage.metrics.add_task(t, started, ended)
        self.bytes_written += t.bytes_written
        self.bytes_read += t.bytes_read
        self.tasks_per_worker[worker] = self.tasks_per_worker.get(worker, 0) + 1

    def progress(self) -> list[list[int]]:
        """``[stage, tasks done, tasks, records out]`` per stage, for the client's progress bars."""
        return [[s.id, len(s.done), len(s.needed), s.metrics.records_out] for s in self.order]

    def retried(self, stage: StageRun) -> None:
        stage.metrics.retries += 1
        self.retries += 1

    def metrics(self) -> JobMetrics:
        """The job's figures so far, in the one metrics model (``to_wire()`` for a message)."""
        m = JobMetrics("cluster", {s.id: s.metrics for s in self.order}, time.monotonic() - self.started,
                       self.tasks_per_worker, self.retries, self.bytes_written, self.bytes_read, self.id)
        m.finish()
        return m

    def keys_to_delete(self, success: bool) -> list[str]:
        """Every key this job may have written that must not outlive it. Results are read (and
        deleted) by the client after a success; caches and kept shuffles stay unless their stage did
        not finish."""
        spec = self.spec
        keys = Keys.of(spec)
        out = [keys.source(src, i) for src, n in spec["sources"].items() for i in range(n)]
        for sh, maps in spec["shuffles"].items():
            # a kept shuffle outlives the job (its client drops it), unless its map stage did not finish
            writer = self.shuffle_writer.get(sh)
            if sh not in keys.kept or not success and writer is not None and not self.stages[writer].complete:
                out += [keys.shuffle(sh, m) for m in range(maps)]
        for s in self.order:
            info = s.info
            if info["kind"] == "mat" and (info["scope"] != "context" or not success and not s.complete):
                out += [keys.materialized(info["cache_id"], info["scope"], i) for i in range(info["n"])]
        if not success:
            out += [keys.result(p) for p in self.result_stage.needed]
        return out
