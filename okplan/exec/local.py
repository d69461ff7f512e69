"""The embedded default: runs every task in this process, stage after stage, blocks in memory."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from typing import Any, Callable, Iterator

from ..errors import CacheLostError
from ..physical.stage import Materialize, PhysicalPlan, ShuffleWrite, Stage
from .metrics import JobMetrics, LastMetrics
from .serialization import compress, decompress, deserialize, serialize
from .task import run_task


class _MemoryBlocks:
    """Inputs of the running job: shuffle buckets and materialised partitions, all in memory."""

    __slots__ = ("shuffles", "job_data", "cache", "reused")

    def __init__(self, cache: dict[str, list[list]]):
        self.shuffles: dict[int, list[list[list]]] = {}
        self.reused: dict[int, list[list[bytes]]] = {}  # shuffle id -> kept output of an earlier job
        self.job_data: dict[str, list[list]] = {}   # subplans shared within this job
        self.cache = cache

    def source(self, source_id: str, index: int) -> list:
        raise KeyError(f"source {source_id} has no data in the local executor")

    def shuffle_buckets(self, shuffle_id: int, reduce_index: int) -> list[list]:
        kept = self.reused.get(shuffle_id)
        if kept is not None:  # fresh objects on every read: a reduce may merge into its combiners in place
            return [deserialize(decompress(buckets[reduce_index])) for buckets in kept]
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
    #: finished shuffle outputs can be kept for later jobs (``keep_id`` of ``ShuffleWrite``)
    keeps_shuffles = True

    def __init__(self, parallelism: int | None = None):
        self.default_parallelism = parallelism or os.cpu_count() or 1
        self.cache: dict[str, list[list]] = {}
        self.named: dict[str, list[list]] = {}
        #: kept shuffle outputs: keep id -> per map task, its buckets pickled and compressed (immutable)
        self.kept: dict[str, list[list[bytes]]] = {}
        self._metrics = LastMetrics()

    @property
    def last_metrics(self) -> JobMetrics | None:
        """The metrics of the calling thread's last job (else of the last job of any thread)."""
        return self._metrics.get()

    def run(self, plan: PhysicalPlan, action: Callable[[Iterator], Any],
            partitions: list[int]) -> Iterator[tuple[int, Any]]:
        blocks = _MemoryBlocks(self.cache)
        metrics = JobMetrics(self.name)
        self._metrics.set(metrics)
        start = time.perf_counter()
        with _fewer_collections():
            yield from self._run(plan, action, partitions, blocks, metrics, start)

    def _run(self, plan: PhysicalPlan, action: Callable[[Iterator], Any], partitions: list[int],
             blocks: _MemoryBlocks, metrics: JobMetrics, start: float) -> Iterator[tuple[int, Any]]:
        try:
            for stage in plan.stages[:-1]:
                out = stage.output
                if isinstance(out, Materialize) and out.cache_id in self.cache:
                    continue
                if isinstance(out, ShuffleWrite) and out.reused_from is not None:
                    kept = self.kept.get(out.keep_id)  # type: ignore[arg-type]
                    if kept is None:  # dropped since the job was planned: the session plans again
                        raise CacheLostError(f"kept shuffle {out.keep_id} was dropped while a job read it",
                                             out.keep_id)
                    blocks.reused[out.shuffle_id] = kept
                    continue
                m = metrics.stage(stage.id, _stage_kind(stage))
                t0 = time.perf_counter()
                results = [run_task(stage, p, blocks) for p in range(stage.num_partitions)]
                values = [r.value for r in results]
                m.tasks += stage.num_partitions
                m.records_in += sum(r.records_in for r in results)
                m.records_out += sum(r.records_out for r in results)
                if isinstance(out, ShuffleWrite):
                    blocks.shuffles[out.shuffle_id] = values
                    if out.keep_id is not None:
                        self.kept[out.keep_id] = [[compress(serialize(b)) for b in buckets] for buckets in values]
                elif isinstance(out, Materialize):
                    target = self.cache if out.scope == "context" else blocks.job_data
                    target[out.cache_id] = values
                m.seconds += time.perf_counter() - t0
                m.add_phase("compute", time.perf_counter() - t0)
            stage = plan.result_stage
            m = metrics.stage(stage.id, "result")
            for p in partitions:
                t0 = time.perf_counter()
                r = run_task(stage, p, blocks, action)
                m.tasks += 1
                m.records_in += r.records_in
                m.records_out += r.records_out
                m.seconds += time.perf_counter() - t0
                yield p, r.value
            m.add_phase("compute", m.seconds)
        finally:
            metrics.seconds = time.perf_counter() - start
            metrics.tasks_per_worker["local"] = sum(s.tasks for s in metrics.stages.values())

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

    def has_kept_shuffle(self, keep_id: str) -> bool:
        return keep_id in self.kept

    def drop_kept_shuffle(self, keep_id: str) -> None:
        self.kept.pop(keep_id, None)

    def stop(self) -> None:
        self.cache.clear()
        self.kept.clear()
