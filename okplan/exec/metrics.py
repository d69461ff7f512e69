"""What a job did, per stage: tasks, records, bytes and seconds. ONE model for every executor: the local
executor fills it directly; a cluster worker reports a ``TaskMetrics`` per task, the master folds them
into ``StageMetrics`` and sends the ``JobMetrics`` to the client, all as plain JSON-able data."""

from __future__ import annotations

import statistics
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: the phases a task's time is split into (``schedule``: time around the task, cluster only)
PHASES = ("compute", "serialize", "compress", "store", "schedule")


@dataclass
class TaskMetrics:
    """What one task measured where it ran. ``seconds`` is its wall time there."""

    records_in: int = 0
    records_out: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    #: split of ``seconds``: compute, serialize, compress, store
    phases: dict[str, float] = field(default_factory=dict)
    bytes_raw: int = 0
    bytes_compressed: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    spill_bytes: int = 0
    #: seconds per operator, sampled (only with ``Context(profile=True)``)
    operators: dict[str, float] = field(default_factory=dict)
    #: a map task's records and (pickled, estimated from a sample of records) bytes per reduce partition
    partition_records: list[int] = field(default_factory=list)
    partition_bytes: list[int] = field(default_factory=list)

    def to_wire(self) -> dict[str, Any]:
        """Plain data for a message.

        >>> TaskMetrics(3, 1).to_wire()["records_out"]
        1
        """
        return dict(self.__dict__)  # a flat copy: asdict's deep copy cost more than the task's bookkeeping

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> "TaskMetrics":
        try:
            return cls(**d)
        except TypeError:  # a field this version does not know: keep the ones it does
            return cls(**{k: d[k] for k in _TASK_FIELDS if k in d})


@dataclass
class StageMetrics:
    """One stage of one job. ``seconds`` is elapsed time (first task started to last task ended), not
    the sum of its tasks (``task_seconds``); ``skew`` is the slowest task over the median one.

    >>> m = StageMetrics(0, "result"); m.add_task(TaskMetrics(10, 4, 0.5), 1.0, 1.5)
    >>> m.add_task(TaskMetrics(10, 6, 1.5), 1.0, 2.5); m.finish()
    >>> (m.tasks, m.records_out, m.seconds, m.task_seconds, m.skew)
    (2, 10, 1.5, 2.0, 1.5)
    """

    stage_id: int
    kind: str
    tasks: int = 0
    records_in: int = 0
    records_out: int = 0
    seconds: float = 0.0
    task_seconds: float = 0.0
    task_seconds_max: float = 0.0
    task_seconds_median: float = 0.0
    cpu_seconds: float = 0.0
    #: split of ``task_seconds`` by phase: compute, serialize, compress, store, schedule
    phases: dict[str, float] = field(default_factory=dict)
    bytes_raw: int = 0
    bytes_compressed: int = 0
    #: bytes the stage's tasks wrote to spill files (memory budget exceeded)
    spill_bytes: int = 0
    retries: int = 0
    #: seconds per operator summed over tasks, sampled (``Context(profile=True)``)
    operators: dict[str, float] = field(default_factory=dict)
    #: a map stage's output per reduce partition, summed over its tasks: records, and pickled bytes
    #: (estimated from a sample of each task's records); what skew looks like, what adaptive planning reads
    partition_records: list[int] = field(default_factory=list)
    partition_bytes: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._times: list[float] = []
        self._first: float | None = None
        self._last: float | None = None

    def add_phase(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    def add_task(self, t: TaskMetrics, started: float, ended: float) -> None:
        """Fold one successful task in; ``started``/``ended`` on the aggregating process's clock."""
        self.tasks += 1
        self.records_in += t.records_in
        self.records_out += t.records_out
        self.task_seconds += t.seconds
        self.cpu_seconds += t.cpu_seconds
        phases = self.phases
        for ph, s in t.phases.items():
            phases[ph] = phases.get(ph, 0.0) + s
        self.bytes_raw += t.bytes_raw
        self.bytes_compressed += t.bytes_compressed
        self.spill_bytes += t.spill_bytes
        if t.operators:
            ops = self.operators
            for name, s in t.operators.items():
                ops[name] = ops.get(name, 0.0) + s
        if t.partition_records:
            _add_into(self.partition_records, t.partition_records)
        if t.partition_bytes:
            _add_into(self.partition_bytes, t.partition_bytes)
        self._times.append(t.seconds)
        if self._first is None or started < self._first:
            self._first = started
        if self._last is None or ended > self._last:
            self._last = ended

    def finish(self) -> None:
        """Compute elapsed time and the task-time spread from the tasks added so far."""
        if self._first is not None and self._last is not None:
            self.seconds = self._last - self._first
        times = self._times
        if times:
            self.task_seconds_max = max(times)
            if len(times) == 1:
                self.task_seconds_median = times[0]
            else:  # statistics.median's checks cost more than a small job's bookkeeping
                times = sorted(times)
                mid = len(times) // 2
                self.task_seconds_median = times[mid] if len(times) % 2 else (times[mid - 1] + times[mid]) / 2

    @property
    def partition_skew(self) -> tuple[int, float] | None:
        """The biggest reduce partition of a map stage's output and its records over the median
        partition's (1.0: even), None when not a map stage or empty.

        >>> m = StageMetrics(0, "shuffle map", partition_records=[10, 10, 50]); m.partition_skew
        (2, 5.0)
        """
        sizes = self.partition_records
        if not sizes or not any(sizes):
            return None
        biggest = max(range(len(sizes)), key=sizes.__getitem__)
        median = statistics.median(sizes)
        return biggest, sizes[biggest] / median if median else float("inf")

    @property
    def skew(self) -> float | None:
        """Slowest task over the median task (1.0: even), None before any task."""
        if not self.task_seconds_median:
            return None
        return self.task_seconds_max / self.task_seconds_median

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> "StageMetrics":
        return cls(**{k: d[k] for k in _STAGE_FIELDS if k in d})


@dataclass
class JobMetrics:
    """A job's stages plus what only the job knows (tasks per worker, bytes to and from Redis)."""

    executor: str
    stages: dict[int, StageMetrics] = field(default_factory=dict)
    seconds: float = 0.0
    tasks_per_worker: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    bytes_written: int = 0
    bytes_read: int = 0
    job_id: str | None = None
    #: what adaptive planning decided for the job (``adaptive: join #7: split partition 3 ...``)
    notes: list[str] = field(default_factory=list)
    #: local[N]: where each stage ran and why (``stage 0: on the task processes``)
    placement: list[str] = field(default_factory=list)

    def stage(self, stage_id: int, kind: str) -> StageMetrics:
        m = self.stages.get(stage_id)
        if m is None:
            m = self.stages[stage_id] = StageMetrics(stage_id, kind)
        return m

    def finish(self) -> None:
        for m in self.stages.values():
            m.finish()

    @property
    def records_shuffled(self) -> int:
        return sum(m.records_out for m in self.stages.values() if m.kind.startswith("shuffle"))

    @property
    def compression_ratio(self) -> float | None:
        raw = sum(m.bytes_raw for m in self.stages.values())
        comp = sum(m.bytes_compressed for m in self.stages.values())
        return raw / comp if comp else None

    def as_dict(self) -> dict[str, Any]:
        """Everything as plain data (``getProfile()``), stages by id."""
        d = asdict(self)
        d["records_shuffled"] = self.records_shuffled
        d["compression_ratio"] = self.compression_ratio
        return d

    def to_wire(self) -> dict[str, Any]:
        """Plain JSON-able data for a message (stages as a list: JSON keys are strings)."""
        d = asdict(self)
        d["stages"] = [m.to_wire() for m in self.stages.values()]
        return d

    def fill_from_wire(self, d: dict[str, Any]) -> None:
        """Take the figures another process measured (the master's, on the client)."""
        for sd in d.get("stages", ()):
            m = StageMetrics.from_wire(sd)
            self.stages[m.stage_id] = m
        self.tasks_per_worker = dict(d.get("tasks_per_worker", {}))
        self.retries = d.get("retries", 0)
        self.bytes_written += d.get("bytes_written", 0)
        self.bytes_read += d.get("bytes_read", 0)


class LastMetrics:
    """An executor's "last job": per thread, so that threads running actions on one Context at once
    each read their own job's metrics; a thread that ran none reads the last job of any thread.

    >>> last = LastMetrics(); last.set(JobMetrics("local")); last.get().executor
    'local'
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._any: JobMetrics | None = None

    def set(self, metrics: JobMetrics) -> None:
        self._local.metrics = metrics
        self._any = metrics

    def get(self) -> JobMetrics | None:
        return getattr(self._local, "metrics", None) or self._any


def _add_into(total: list[int], more: list[int]) -> None:
    """``total += more`` element by element, growing ``total`` as needed."""
    if len(total) < len(more):
        total.extend([0] * (len(more) - len(total)))
    for i, n in enumerate(more):
        total[i] += n


_TASK_FIELDS = tuple(f.name for f in fields(TaskMetrics))
_STAGE_FIELDS = tuple(f.name for f in fields(StageMetrics))

