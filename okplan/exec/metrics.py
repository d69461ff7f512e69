"""What a job did, per stage: tasks, records, bytes and seconds. Filled by executors."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class StageMetrics:
    stage_id: int
    kind: str
    tasks: int = 0
    records_in: int = 0
    records_out: int = 0
    seconds: float = 0.0
    #: split of ``seconds`` by phase: compute, serialize, compress, store, schedule
    phases: dict[str, float] = field(default_factory=dict)
    bytes_raw: int = 0
    bytes_compressed: int = 0
    retries: int = 0
    #: bytes the stage's tasks wrote to spill files (memory budget exceeded)
    spill_bytes: int = 0

    def add_phase(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds


@dataclass
class JobMetrics:
    executor: str
    stages: dict[int, StageMetrics] = field(default_factory=dict)
    seconds: float = 0.0
    tasks_per_worker: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    bytes_written: int = 0
    bytes_read: int = 0

    def stage(self, stage_id: int, kind: str) -> StageMetrics:
        m = self.stages.get(stage_id)
        if m is None:
            m = self.stages[stage_id] = StageMetrics(stage_id, kind)
        return m

    @property
    def records_shuffled(self) -> int:
        return sum(m.records_out for m in self.stages.values() if m.kind.startswith("shuffle"))

    @property
    def compression_ratio(self) -> float | None:
        raw = sum(m.bytes_raw for m in self.stages.values())
        comp = sum(m.bytes_compressed for m in self.stages.values())
        return raw / comp if comp else None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["records_shuffled"] = self.records_shuffled
        d["compression_ratio"] = self.compression_ratio
        return d


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
