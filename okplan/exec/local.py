"""The embedded default: runs every task in this process, stage after stage, blocks in memory."""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import threading
import time
from typing import Any, Callable, Iterator

from ..errors import CacheLostError
from ..physical.stage import Materialize, PhysicalPlan, ShuffleWrite, Stage
from .metrics import JobMetrics, LastMetrics, StageMetrics, TaskMetrics
from .profile import profile_wanted, profiled
from .progress import job_progress
from .task import run_task


#: local job ids: unique in this process and unlikely to collide with another's (no syscall per job)
_JOB_PREFIX = f"{os.getpid() & 0xffff:04x}"
_job_numbers = itertools.count(1)


class _MemoryBlocks:
    """Inputs of the running job: shuffle buckets and materialised partitions, all in memory."""

    __slots__ = ("shuffles", "job_data", "cache")

    def __init__(self, cache: dict[str, list[list]]):
        self.shuffles: dict[int, list[list[list]]] = {}
        self.job_data: dict[str, list[list]] = {}   # subplans shared within this job
        self.cache = cache

    def source(self, source_id: str, index: int) -> list:
        raise KeyError(f"source {source_id} has no data in the local executor")

    def shuffle_buckets(self, shuffle_id: int, reduce_index: int) -> list[list]:
        return [buckets[reduce_index] for buckets in self.shuffles[shuffle_id]]

    def materialized(self, cache_id: str, index: int) -> list:
        parts = self.job_data.get(cache_id)
        if parts is None:
            parts = self.cache.get(cache_id)
        if parts is None:
            # another thread unpersisted it after this job was planned: the Context plans again
            raise CacheLostError(f"cached dataset {cache_id} was dropped while a job read it", cache_id)
        return parts[index]


#: the young-generation GC threshold while a job runs (Python's default is 700)
JOB_GC_THRESHOLD = 10_000

_gc_lock = threading.Lock()
_gc_jobs = 0
_gc_saved: tuple[int, ...] | None = None


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect the young generation less often while a job runs.

    A job allocates containers by the hundred thousand (pair tuples, shuffle buckets, groups) while its
    inputs are alive, and with Python's default threshold of 700 the collector keeps re-scanning them:
    measured, a join spent a third of its time there. The threshold is only ever raised, and restored
    when the last running job ends (jobs of several threads share one count); garbage is still
    collected, just in bigger batches.
    """
    global _gc_jobs, _gc_saved
    with _gc_lock:
        if _gc_jobs == 0:
            current = gc.get_threshold()
            if current[0] and current[0] < JOB_GC_THRESHOLD:
                _gc_saved = current
                gc.set_threshold(JOB_GC_THRESHOLD, *current[1:])
        _gc_jobs += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_jobs -= 1
            if _gc_jobs == 0 and _gc_saved is not None:
                # put back what was there unless someone changed it while the job ran
                if gc.get_threshold()[0] == JOB_GC_THRESHOLD:
                    gc.set_threshold(*_gc_saved)
                _gc_saved = None


def _stage_kind(stage: Stage) -> str:
    out = stage.output
    if isinstance(out, ShuffleWrite):
        return "shuffle map"
    if isinstance(out, Materialize):
        return "materialize"
    return "result"


class LocalExecutor:
    """In-process executor. ``cache()`` keeps partitions in this object until ``unpersist()``.

    Thread-safe: each job keeps its own blocks; the shared cache and named datasets change only by
    whole-entry dict operations, atomic in CPython.
    """

    name = "local"

    def __init__(self, parallelism: int | None = None):
        self.default_parallelism = parallelism or os.cpu_count() or 1
        self.cache: dict[str, list[list]] = {}
        self.named: dict[str, list[list]] = {}
        self._metrics = LastMetrics()
        #: time each operator inside fused stages (sampled): ``Context(profile=True)``
        self.profile = profile_wanted()
        self.ui_web_url: str | None = None

    @property
    def last_metrics(self) -> JobMetrics | None:
        """The metrics of the calling thread's last job (else of the last job of any thread)."""
        return self._metrics.get()

    def run(self, plan: PhysicalPlan, action: Callable[[Iterator], Any],
            partitions: list[int]) -> Iterator[tuple[int, Any]]:
        blocks = _MemoryBlocks(self.cache)
        metrics = JobMetrics(self.name, job_id=f"{_JOB_PREFIX}{next(_job_numbers):06x}")
        self._metrics.set(metrics)
        start = time.perf_counter()
        with _fewer_collections():
            yield from self._run(plan, action, partitions, blocks, metrics, start)

    def _task(self, stage: Stage, p: int, blocks: _MemoryBlocks, m: StageMetrics,
              action: Callable[[Iterator], Any] | None = None) -> Any:
        """Run one task and fold its figures into ``m``; the task's value. (CPU time is taken per stage:
        reading the thread's CPU clock costs microseconds, as much as a tiny task.)"""
        t0 = time.perf_counter()
        if self.profile:
            with profiled(stage, action) as operators:
                r = run_task(stage, p, blocks, action)
        else:
            operators = None
            r = run_task(stage, p, blocks, action)
        t1 = time.perf_counter()
        m.add_task(TaskMetrics(r.records_in, r.records_out, t1 - t0, 0.0, {"compute": t1 - t0},
                               operators=operators or {}), t0, t1)
        return r.value

    def _run(self, plan: PhysicalPlan, action: Callable[[Iterator], Any], partitions: list[int],
             blocks: _MemoryBlocks, metrics: JobMetrics, start: float) -> Iterator[tuple[int, Any]]:
        progress = job_progress(metrics.job_id or "")
        try:
            for stage in plan.stages[:-1]:
                out = stage.output
                if isinstance(out, Materialize) and out.cache_id in self.cache:
                    continue
                m = metrics.stage(stage.id, _stage_kind(stage))
                values = []
                c0 = time.thread_time()
                for p in range(stage.num_partitions):
                    values.append(self._task(stage, p, blocks, m))
                    if progress is not None:
                        progress.update(stage.id, m.tasks, stage.num_partitions, m.records_out)
                m.cpu_seconds += time.thread_time() - c0
                if isinstance(out, ShuffleWrite):
                    blocks.shuffles[out.shuffle_id] = values
                elif isinstance(out, Materialize):
                    target = self.cache if out.scope == "context" else blocks.job_data
                    target[out.cache_id] = values
            stage = plan.result_stage
            m = metrics.stage(stage.id, "result")
            # (includes what the caller does with each result before asking for the next: little, for
            # actions; a toLocalIterator loop's body counts here too)
            c0 = time.thread_time()
            for p in partitions:
                value = self._task(stage, p, blocks, m, action)
                if progress is not None:
                    progress.update(stage.id, m.tasks, len(partitions), m.records_out)
                yield p, value
            m.cpu_seconds += time.thread_time() - c0
        finally:
            if progress is not None:
                progress.close()
            metrics.seconds = time.perf_counter() - start
            metrics.tasks_per_worker["local"] = sum(s.tasks for s in metrics.stages.values())
            metrics.finish()

    def has_cached(self, cache_id: str) -> bool:
        return cache_id in self.cache

    def drop_cached(self, cache_id: str) -> None:
        self.cache.pop(cache_id, None)

    def save_named(self, label: str, partitions: list[list]) -> None:
        self.named[label] = [list(p) for p in partitions]

    def load_named(self, label: str) -> list[list] | None:
        return self.named.get(label)

    def list_named(self) -> list[str]:
        return sorted(self.named)

    def drop_named(self, label: str) -> bool:
        return self.named.pop(label, None) is not None

    def stop(self) -> None:
        self.cache.clear()
