"""The embedded default: runs every task in this process, stage after stage, blocks in memory until
they exceed the task memory budget, then on disk (lz4 spill files of the job, removed when it ends)."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
from itertools import chain
from typing import Any, Callable, Iterator

from ..errors import CacheLostError
from ..physical.operators import ReadSource
from ..physical.stage import Materialize, PhysicalPlan, ShuffleWrite, Stage
from .local_pool import (DEFAULT_MIN_BYTES, DEFAULT_MIN_RECORDS, FileBlock, LocalPool, estimated_input,
                         moving_stages, new_job_id, stage_tables, write_blocks)
from .memory import TaskMemory, rss
from .memory import task_memory as task_memory_of
from .metrics import JobMetrics, LastMetrics, StageMetrics, TaskMetrics
from .profile import profile_wanted, profiled
from .progress import job_progress
from .serialization import (block_key, compress, decompress, deserialize, dumps_function, serialize,
                            without_source_data)
from .spill import OwnedFiles, SpillDir, SpilledRecords, linked, relocate, to_disk
from .task import run_task


#: local job ids: unique in this process and unlikely to collide with another's (no syscall per job)
_JOB_PREFIX = f"{os.getpid() & 0xffff:04x}"
_job_numbers = itertools.count(1)


class _MemoryBlocks:
    """Inputs of the running job: shuffle buckets and materialised partitions, in memory while they
    fit the budget (``held`` estimates their bytes from the tasks' resident growth), else on disk."""

    __slots__ = ("shuffles", "job_data", "cache", "spill_dir", "budget", "held", "new_caches", "reused", "key",
                 "once")

    def __init__(self, cache: dict[str, list[list]], spill_dir: SpillDir | None = None, budget: int = 0,
                 key: bytes = b""):
        self.shuffles: dict[int, list[list[list]]] = {}
        self.job_data: dict[str, list[list]] = {}   # subplans shared within this job
        self.cache = cache
        self.spill_dir = spill_dir
        self.budget = budget
        self.held = 0
        #: partitions of caches this job fills (they join the executor's cache once their stage is done)
        self.new_caches: dict[str, list] = {}
        self.key = key   # of the files a pool job's cache() wrote
        #: shuffle id -> the output an earlier job kept (per map task, its buckets: see ``kept_bucket``)
        self.reused: dict[int, list[list]] = {}
        #: shuffles whose buckets one task reads once and nothing keeps: handed over, not shared
        self.once: frozenset[int] = frozenset()

    def grew(self, nbytes: int, cache_dir: SpillDir) -> None:
        """A task kept ``nbytes`` more; past the budget, every block this job holds in memory goes to disk."""
        self.held += max(0, nbytes)
        if self.spill_dir is None or self.held <= self.budget:
            return
        # in place: the running stage is still appending to these lists
        for outputs in self.shuffles.values():
            outputs[:] = [to_disk(buckets, self.spill_dir, "shuffle") for buckets in outputs]
        for parts in self.job_data.values():
            parts[:] = to_disk(parts, self.spill_dir, "shared")
        for parts in self.new_caches.values():
            parts[:] = to_disk(parts, cache_dir, "cached")
        self.held = 0

    def source(self, source_id: str, index: int) -> list:
        raise KeyError(f"source {source_id} has no data in the local executor")

    def hands_over(self, shuffle_id: int) -> bool:
        """Whether the buckets of ``shuffle_id`` are their reader's alone (it may change them)."""
        return shuffle_id in self.once and shuffle_id not in self.reused

    def shuffle_buckets(self, shuffle_id: int, reduce_index: int,
                        maps: tuple[int, int] | None = None) -> list[list]:
        kept = self.reused.get(shuffle_id)
        rows = kept if kept is not None else self.shuffles[shuffle_id]
        if maps is not None:
            rows = rows[maps[0]:maps[1]]
        if kept is not None:
            return [kept_bucket(buckets[reduce_index], self.key) for buckets in rows]
        return [buckets[reduce_index] for buckets in rows]

    def materialized(self, cache_id: str, index: int) -> list:
        parts = self.job_data.get(cache_id)
        if parts is None:
            parts = self.cache.get(cache_id)
        if parts is None:
            # another thread unpersisted it after this job was planned: the Context plans again
            raise CacheLostError(f"cached dataset {cache_id} was dropped while a job read it", cache_id)
        part = parts[index]
        if not isinstance(part, FileBlock):
            return part
        try:  # a partition a pool job cached lives in a file of the executor's directory
            return part.load(self.key)
        except FileNotFoundError:
            raise CacheLostError(f"cached dataset {cache_id} was dropped while a job read it", cache_id) from None


#: types of record parts that nothing can change in place
_IMMUTABLE = frozenset({int, float, str, bytes, bool, type(None), complex})


def unchangeable(records: list) -> bool:
    """True when no code can change ``records`` in place: tuples of ints, strings, floats, bytes...
    (tuples of those too). Checked in C loops (``map(type, ...)``); still, it touches every object,
    which costs about two thirds of pickling them when they are no longer in the CPU's caches.

    >>> unchangeable([("a", 1), ("b", (2, 3.0))]), unchangeable([("a", [1])])
    (True, False)
    """
    if not records:
        return True
    if set(map(type, records)) != {tuple}:
        return False
    parts = set(map(type, chain.from_iterable(records)))
    if parts <= _IMMUTABLE:
        return True
    if parts - _IMMUTABLE != {tuple}:
        return False
    return unchangeable([x for r in records for x in r if type(x) is tuple])


#: records of a bucket whose types decide how it is kept
_SAMPLE = 64


class _Ref:
    """A bucket kept by reference (copy-on-nothing). When it was kept a sample of its records could
    not be changed in place; every record is checked before its first reuse (``checked``), and a
    bucket that fails is never read again (a job may have changed its records in place)."""

    __slots__ = ("records", "checked")

    def __init__(self, records: list):
        self.records = records
        self.checked = False


class _OnDisk:
    """A spilled bucket kept by its spill files (``spill.linked``): every read unpickles fresh records,
    and nothing was read back to keep it. ``files`` deletes the files when the last kept output (or
    running job) that holds them lets go."""

    __slots__ = ("records", "files")

    def __init__(self, records: SpilledRecords, files: OwnedFiles):
        self.records = records
        self.files = files


def _keepable(bucket: Any) -> Any:
    """A finished bucket as a kept output holds it: a task process's block file as it is (each read
    decodes fresh objects); the list itself (``_Ref``) when a sample of its records cannot change, so
    that a job nothing reuses pays almost nothing; else pickled and compressed, so that every later
    read gets fresh objects (a reduce may merge into its combiners in place, a user function may
    change a record's list)."""
    if type(bucket) is FileBlock:
        return bucket
    if type(bucket) is list and unchangeable(bucket[::max(1, len(bucket) // _SAMPLE)]):
        return _Ref(bucket)
    return compress(serialize(bucket))


def _checked(kept: list[list]) -> bool:
    """Every by-reference bucket of a kept output checked whole (once: it cannot change after)."""
    for row in kept:
        for b in row:
            if type(b) is _Ref and not b.checked:
                if not unchangeable(b.records):
                    return False
                b.checked = True
    return True


def _checked_ref(bucket: Any) -> _Ref:
    ref = _Ref(bucket)
    ref.checked = True
    return ref


def kept_bucket(kept: Any, key: bytes) -> list:
    """A kept bucket's records for a reader (see ``_keepable``; ``key`` seals the executor's files)."""
    if type(kept) is _Ref or type(kept) is _OnDisk:
        return kept.records
    if type(kept) is FileBlock:
        return kept.load(key)
    return deserialize(decompress(kept))


def _kept_size(bucket: Any) -> int:
    """Bytes a kept bucket holds: its compressed size (in memory or in a file), or an estimate of a
    kept list's objects from a sample of its records."""
    if type(bucket) is FileBlock:
        return bucket.length
    if type(bucket) is _OnDisk:
        return sum(r.length for r in bucket.records.runs)
    if type(bucket) is not _Ref:
        return len(bucket)
    bucket = bucket.records
    n = len(bucket)
    if not n:
        return sys.getsizeof(bucket)
    sample = bucket[::max(1, n // 16)]
    per = sum(sys.getsizeof(r) + sum(map(sys.getsizeof, r)) for r in sample) / len(sample)
    return sys.getsizeof(bucket) + int(per * n)


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


def _add_pool_task(m: StageMetrics, reply: dict[str, Any]) -> None:
    """Fold a task process's figures in (its perf_counter is the system's monotonic clock, as ours)."""
    t0, t1, cpu = reply["t"]
    written = sum(b.length for b in reply.get("blocks") or ())   # what went to the job's files
    ser = reply["ser"]
    m.add_task(TaskMetrics(reply["rin"], reply["rout"], t1 - t0, cpu, {"compute": t1 - t0 - ser, "serialize": ser},
                           bytes_compressed=written, spill_bytes=reply["spill"], operators=reply["ops"],
                           partition_records=reply.get("precs", []),
                           partition_bytes=reply.get("pbytes", [])), t0, t1)


def _stage_kind(stage: Stage) -> str:
    out = stage.output
    if isinstance(out, ShuffleWrite):
        return "shuffle map"
    if isinstance(out, Materialize):
        return "materialize"
    return "result"


class LocalExecutor:
    """In-process executor, plus (``processes`` > 1) a pool of task processes for big jobs (see
    ``local_pool``). ``cache()`` keeps partitions in this object until ``unpersist()``; a pool job's
    cached partitions are files of this executor's directory.

    Thread-safe: each job keeps its own blocks; the shared cache and named datasets change only by
    whole-entry dict operations, atomic in CPython. One job at a time uses the pool; a job of another
    thread meanwhile runs in-process.
    """

    name = "local"
    #: finished shuffle outputs can be kept for later jobs (``keep_id`` of ``ShuffleWrite``)
    keeps_shuffles = True

    def __init__(self, parallelism: int | None = None, processes: int = 1, task_memory: str | int | None = None,
                 pool_min_records: int = DEFAULT_MIN_RECORDS, pool_min_bytes: int = DEFAULT_MIN_BYTES):
        self.default_parallelism = parallelism or os.cpu_count() or 1
        self.task_memory = task_memory_of(task_memory)
        #: cached partitions that went to disk (memory-and-disk) live here until unpersist or stop
        self.cache_dir = SpillDir("cache")
        self.cache: dict[str, list[list]] = {}
        self.named: dict[str, list[list]] = {}
        #: kept shuffle outputs (shuffle reuse), least recently used first: keep id -> (bytes, per map
        #: task its buckets, see ``_keepable``); all together within the task memory budget
        self.kept: dict[str, tuple[int, list[list]]] = {}
        self._kept_lock = threading.RLock()  # re-entrant: a drop may run from the GC inside a keep
        #: kept outputs a running adaptive job still reads (``pin_shuffle``): kept whatever the budget
        self.pinned: set[str] = set()
        self._job_only: set[str] = set()   # pinned ones no later job reads
        #: a pinned output's buckets by reference, as the job that pinned it reads them
        self._pinned_raw: dict[str, list[list]] = {}
        self._metrics = LastMetrics()
        #: time each operator inside fused stages (sampled): ``Context(profile=True)``
        self.profile = profile_wanted()
        self.ui_web_url: str | None = None
        self.processes = processes
        self.pool_min_records = pool_min_records
        self.pool_min_bytes = pool_min_bytes
        # blocks that task processes write are sealed with a key of this executor's own
        self._key = block_key(os.urandom(32))
        self._pool = LocalPool(processes, self._key, self.task_memory) if processes > 1 else None
        self._dir: str | None = None
        self._trash: list[str] = []   # files of dropped caches, deleted when no pool job reads them

    def placement(self, plan: PhysicalPlan) -> str:
        """Where ``plan`` would run: ``on N task processes`` or ``in-process: <why>``."""
        if self._pool is None:
            return "in-process: one core"
        tasks = sum(s.num_partitions for s in plan.stages)
        if tasks < 2:
            return "in-process: a single task"
        records, size = estimated_input(plan, self.cache)
        for stage in plan.stages:  # a kept shuffle output a stage reads instead of running (reuse, AQE)
            out = stage.output
            if isinstance(out, ShuffleWrite) and out.reused_from is not None:
                kept_records, kept_bytes = self._kept_input(out.keep_id)  # type: ignore[arg-type]
                records, size = records + kept_records, size + kept_bytes
        # a stage that sends every record to another process (a shuffle without a map-side combine, a
        # materialised dataset) costs 1.5-1.7x its in-process CPU there (pickled, written, read,
        # unpickled; measured on groupByKey, join, sortByKey): such a job needs as much input again per
        # stage before two cores pay for it
        scale = 1 + moving_stages(plan)
        min_records, min_bytes = self.pool_min_records * scale, self.pool_min_bytes * scale
        if records < min_records and size < min_bytes:
            why = f"{size:,} bytes of files < {min_bytes:,}" if size else f"{records:,} records < {min_records:,}"
            if scale > 1:
                why += f" for {scale - 1} stage{'s' if scale > 2 else ''} moving every record"
            return f"in-process: small job ({why})"
        return f"on {self.processes} task processes"

    def _work_dir(self) -> str:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix=f"okplan-local-{os.getpid()}-", dir=os.environ.get("OKPLAN_LOCAL_DIR"))
        return self._dir

    @property
    def last_metrics(self) -> JobMetrics | None:
        """The metrics of the calling thread's last job (else of the last job of any thread)."""
        return self._metrics.get()

    def run(self, plan: PhysicalPlan, action: Callable[[Iterator], Any],
            partitions: list[int]) -> Iterator[tuple[int, Any]]:
        metrics = JobMetrics(self.name, job_id=f"{_JOB_PREFIX}{next(_job_numbers):06x}")
        self._metrics.set(metrics)
        start = time.perf_counter()
        if self._pool is not None and self.placement(plan).startswith("on ") and self._pool.try_acquire():
            try:
                yield from self._run_pool(plan, action, partitions, metrics, start)
            finally:
                self._pool.release()
                self._empty_trash()
            return
        spill_dir = SpillDir("job")
        blocks = _MemoryBlocks(self.cache, spill_dir, self.task_memory, self._key)
        blocks.once = plan.read_once - {s.output.shuffle_id for s in plan.stages
                                        if isinstance(s.output, ShuffleWrite) and s.output.keep_id is not None}
        try:
            with _fewer_collections():
                yield from self._run(plan, action, partitions, blocks, metrics, start)
        finally:
            blocks.shuffles.clear()
            blocks.job_data.clear()
            spill_dir.remove()

    def _cached_blocks(self, cache_id: str, job_data: dict[str, list]) -> list[FileBlock]:
        """A materialised dataset's partitions as file blocks, writing those held in memory to files."""
        parts = job_data.get(cache_id)
        if parts is None:
            parts = self.cache.get(cache_id)
            if parts is None:
                raise CacheLostError(f"cached dataset {cache_id} was dropped while a job read it", cache_id)
            if not all(isinstance(p, FileBlock) for p in parts):
                path = os.path.join(self._work_dir(), f"cache-{cache_id}-{new_job_id()}")
                parts = [p if isinstance(p, FileBlock) else write_blocks(f"{path}-{i}", [p], self._key)[0]
                         for i, p in enumerate(parts)]
                self.cache[cache_id] = parts
        return parts

    def _run_pool(self, plan: PhysicalPlan, action: Callable[[Iterator], Any], partitions: list[int],
                  metrics: JobMetrics, start: float) -> Iterator[tuple[int, Any]]:
        """Every stage on the pool; shuffle buckets and shared subplans in files of a job directory."""
        assert self._pool is not None
        # read per job, as in-process (the pool is this job's now)
        self._pool.budget, self._pool.profile = self.task_memory, self.profile
        # pickled once per job here, where an unpicklable function is named as on the cluster; the
        # parallelized partitions go apart, each to the task that reads it, pickled once (C pickler)
        functions = dumps_function(({s.id: s for s in plan.stages}, action), strip=without_source_data)
        pickled: dict[tuple[str, int], bytes] = {}

        def sources(op: ReadSource, i: int) -> bytes:
            found = pickled.get((op.source_id, i))
            if found is None:
                found = pickled[(op.source_id, i)] = serialize(op.slices[i])
            return found

        job = new_job_id()
        job_dir = tempfile.mkdtemp(prefix=f"job-{job}-", dir=self._work_dir())
        shuffles: dict[int, list[list[FileBlock]]] = {}
        job_data: dict[str, list[FileBlock]] = {}
        per_slot: dict[str, int] = {}
        try:
            for stage in plan.stages[:-1]:
                out = stage.output
                if isinstance(out, Materialize) and out.cache_id in self.cache:
                    continue
                if isinstance(out, ShuffleWrite) and out.reused_from is not None:
                    # kept by an earlier job: the task processes read it from files (those of the
                    # job that kept it, or new ones for an output an in-process job kept)
                    kept = self._reused_output(out)
                    shuffles[out.shuffle_id] = [
                        buckets if all(type(b) is FileBlock for b in buckets) else
                        write_blocks(os.path.join(job_dir, f"reused-{out.shuffle_id}-{i}"),
                                     [kept_bucket(b, self._key) for b in buckets], self._key)
                        for i, buckets in enumerate(kept)]
                    continue
                m = metrics.stage(stage.id, _stage_kind(stage))
                tables = stage_tables(stage, shuffles, lambda c: self._cached_blocks(c, job_data))
                # a cache outlives the job: its files go to the executor's directory
                where = self._work_dir() if isinstance(out, Materialize) and out.scope == "context" else job_dir
                written: dict[int, list[FileBlock]] = {}
                for p, reply, _ in self._pool.run_stage(job, functions, where, stage,
                                                        list(range(stage.num_partitions)), tables, per_slot,
                                                        sources):
                    written[p] = reply["blocks"]
                    _add_pool_task(m, reply)
                rows = [written[p] for p in range(stage.num_partitions)]
                if isinstance(out, ShuffleWrite):
                    if out.keep_id is not None and (out.keep_id in self.pinned or
                                                    sum(b.length for row in rows for b in row) <= self.task_memory):
                        # kept for later jobs: its files move out of the job's directory, nothing is read
                        rows = self._moved(rows, out.keep_id)
                        self._keep(out.keep_id, rows)
                    shuffles[out.shuffle_id] = rows
                elif isinstance(out, Materialize):
                    target = self.cache if out.scope == "context" else job_data
                    target[out.cache_id] = [row[0] for row in rows]
            stage = plan.result_stage
            m = metrics.stage(stage.id, "result")
            tables = stage_tables(stage, shuffles, lambda c: self._cached_blocks(c, job_data))
            done: dict[int, Any] = {}
            order = iter(partitions)
            want = next(order, None)
            results = self._pool.run_stage(job, functions, job_dir, stage, partitions, tables, per_slot, sources)
            try:
                for p, reply, out_blobs in results:
                    _add_pool_task(m, reply)
                    done[p] = deserialize(out_blobs[0])
                    while want is not None and want in done:  # in the order asked for
                        yield want, done.pop(want)
                        want = next(order, None)
            finally:
                results.close()
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)
            metrics.seconds = time.perf_counter() - start
            metrics.tasks_per_worker.update(per_slot)
            metrics.finish()

    def _task(self, stage: Stage, p: int, blocks: _MemoryBlocks, m: StageMetrics,
              action: Callable[[Iterator], Any] | None = None) -> Any:
        """Run one task and fold its figures into ``m``; the task's value. (CPU time is taken per stage:
        reading the thread's CPU clock costs microseconds, as much as a tiny task.)"""
        memory = TaskMemory(self.task_memory, blocks.spill_dir)
        t0 = time.perf_counter()
        if self.profile:
            with profiled(stage, action) as operators:
                r = run_task(stage, p, blocks, action, memory)
        else:
            operators = None
            r = run_task(stage, p, blocks, action, memory)
        t1 = time.perf_counter()
        m.add_task(TaskMetrics(r.records_in, r.records_out, t1 - t0, 0.0, {"compute": t1 - t0},
                               spill_bytes=r.spill_bytes, operators=operators or {},
                               partition_records=r.bucket_records or [],
                               partition_bytes=r.bucket_bytes or []), t0, t1)
        return r.value

    def _reused_output(self, out: ShuffleWrite) -> Any:
        """The kept output a reused shuffle reads; CacheLostError when it was dropped since the job was
        planned (the session then plans again, recomputing it)."""
        raw = self._pinned_raw.get(out.keep_id)  # type: ignore[arg-type]
        if raw is not None:
            return raw
        kept = self._kept_output(out.keep_id)  # type: ignore[arg-type]
        if kept is None:
            raise CacheLostError(f"kept shuffle {out.keep_id} was dropped while a job read it", out.keep_id)
        if not _checked(kept):
            self.drop_kept_shuffle(out.keep_id)  # type: ignore[arg-type]
            raise CacheLostError(f"kept shuffle {out.keep_id} holds records a job may have changed in place",
                                 out.keep_id)
        return kept

    def _run(self, plan: PhysicalPlan, action: Callable[[Iterator], Any], partitions: list[int],
             blocks: _MemoryBlocks, metrics: JobMetrics, start: float) -> Iterator[tuple[int, Any]]:
        progress = job_progress(metrics.job_id or "")
        try:
            for stage in plan.stages[:-1]:
                out = stage.output
                if isinstance(out, Materialize) and out.cache_id in self.cache:
                    continue
                if isinstance(out, ShuffleWrite) and out.reused_from is not None:
                    blocks.reused[out.shuffle_id] = self._reused_output(out)
                    continue
                m = metrics.stage(stage.id, _stage_kind(stage))
                values: list = []
                if isinstance(out, ShuffleWrite):
                    blocks.shuffles[out.shuffle_id] = values
                elif isinstance(out, Materialize):
                    if out.scope == "context":
                        values = blocks.new_caches[out.cache_id] = []
                    else:
                        values = blocks.job_data[out.cache_id] = []
                c0 = time.thread_time()
                for p in range(stage.num_partitions):
                    before, spilled = rss(), m.spill_bytes
                    value = self._task(stage, p, blocks, m)
                    if m.spill_bytes > spilled and not isinstance(out, Materialize):
                        # a task that spilled had more than its budget: the rest of its output goes to
                        # disk at once (held until the job's blocks reach the budget, it doubled the peak)
                        value = to_disk(value, blocks.spill_dir, "shuffle")
                    values.append(value)
                    blocks.grew(rss() - before, self.cache_dir)
                    if progress is not None:
                        progress.update(stage.id, m.tasks, stage.num_partitions, m.records_out)
                m.cpu_seconds += time.thread_time() - c0
                if isinstance(out, Materialize) and out.scope == "context":
                    # a cache outlives the job: its spilled partitions move to the executor's directory
                    self.cache[out.cache_id] = relocate(values, self.cache_dir)
                elif isinstance(out, ShuffleWrite) and out.keep_id is not None:
                    self._keep(out.keep_id, values)
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
        parts = self.cache.pop(cache_id, None) or ()
        for path in {r.path for p in parts for r in getattr(p, "runs", ())}:
            try:
                os.unlink(path)
            except OSError:
                pass
        self._trash.extend(p.path for p in parts if isinstance(p, FileBlock))
        self._empty_trash()

    def _empty_trash(self) -> None:
        """Delete the files of dropped caches, unless a pool job runs: it may have planned with them
        (as an in-process job keeps reading the lists it found), and its end empties the trash."""
        if not self._trash or self._pool is None or not self._pool.try_acquire():
            return
        try:
            while self._trash:
                with contextlib.suppress(OSError):
                    os.unlink(self._trash.pop())
        finally:
            self._pool.release()

    def _moved(self, rows: list[list[FileBlock]], keep_id: str) -> list[list[FileBlock]]:
        """A pool job's map output, its files moved to the executor's directory (they outlive the job)."""
        moved: dict[str, str] = {}
        for row in rows:
            for b in row:
                if b.path not in moved:
                    moved[b.path] = os.path.join(self._work_dir(), f"kept-{keep_id}-{os.path.basename(b.path)}")
                    os.rename(b.path, moved[b.path])
        return [[dataclasses.replace(b, path=moved[b.path]) for b in row] for row in rows]

    def _discard(self, kept: list[list]) -> None:
        """Delete the files of a dropped kept output (when no pool job may be reading them)."""
        self._trash.extend({b.path for row in kept for b in row if type(b) is FileBlock})
        self._empty_trash()

    def _keep(self, keep_id: str, outputs: list[list]) -> None:
        """Keep a finished shuffle's buckets for later jobs, before the reduce side reads them: by
        reference when their records cannot change, else pickled and compressed (``_keepable``);
        spilled ones by their spill files (``_OnDisk``: reading a spilled output back to pickle it cost
        a quarter of a spilling groupByKey). They count against the task memory budget: an output larger than the budget is not kept, and
        the least recently used ones are dropped to make room (a later job then computes them
        again). Records pickle refuses are not kept either."""
        if keep_id in self.pinned:
            self._keep_pinned(keep_id, outputs)
            return
        on_disk = sum(r.length for buckets in outputs for b in buckets if type(b) is SpilledRecords for r in b.runs)
        if on_disk > self.task_memory:
            return  # it would not fit when kept
        try:
            if on_disk:
                # spilled buckets are kept as their files, linked into the executor's directory
                rows, files = linked(outputs, self.cache_dir)
                kept = [[_OnDisk(b, files) if type(b) is SpilledRecords else _keepable(b) for b in buckets]
                        for buckets in rows]
            else:
                kept = [[_keepable(b) for b in buckets] for buckets in outputs]
        except (pickle.PicklingError, TypeError, AttributeError, OSError):
            return
        size = sum(_kept_size(b) for buckets in kept for b in buckets)
        with self._kept_lock:
            if size > self.task_memory:
                self._discard(kept)
                return
            self.kept[keep_id] = (size, kept)
            self._trim()

    def _keep_pinned(self, keep_id: str, outputs: list[list]) -> None:
        """A pinned output: its buckets by reference for the job that pinned it (which reads them as
        it would have read its own, so nothing is copied or checked), spilled ones moved out of the
        job's directory; and, when shuffle reuse may want it later and it can be, kept for later
        jobs too as ``_keep`` keeps outputs (checked and within the budget once unpinned)."""
        kept: list[list] | None = None
        size = 0
        if keep_id not in self._job_only:
            try:
                kept = [[_keepable(b) for b in buckets] for buckets in outputs]
                size = sum(_kept_size(b) for buckets in kept for b in buckets)
            except (pickle.PicklingError, TypeError, AttributeError):
                kept = None
        raw = [[b if type(b) is FileBlock else _checked_ref(b) for b in relocate(buckets, self.cache_dir)]
               for buckets in outputs]
        with self._kept_lock:
            self._pinned_raw[keep_id] = raw
            if kept is None:
                self._job_only.add(keep_id)
                self.kept[keep_id] = (0, raw)
            else:
                self.kept[keep_id] = (size, kept)

    def _trim(self) -> None:
        """Drop the least recently used kept outputs past the budget (never a pinned one)."""
        with self._kept_lock:
            total = sum(n for n, _ in self.kept.values())
            for old in list(self.kept):
                if total <= self.task_memory:
                    break
                if old in self.pinned:
                    continue
                n, dropped = self.kept.pop(old)
                total -= n
                self._discard(dropped)

    def pin_shuffle(self, keep_id: str, reusable: bool = True) -> None:
        """Keep the output written under ``keep_id`` whatever the budget, until ``unpin_shuffle``: an
        adaptive job ran its map stage first and reads it next (``okplan/query_stages.py``).
        ``reusable=False``: no later job will read it (it is not copied for them).

        >>> ex = LocalExecutor(); ex.pin_shuffle("s-1"); sorted(ex.pinned)
        ['s-1']
        """
        self.pinned.add(keep_id)
        if not reusable:
            self._job_only.add(keep_id)

    def unpin_shuffle(self, keep_id: str) -> None:
        """The pinning job is done: the output stays for later jobs within the budget, or goes.

        >>> ex = LocalExecutor(); ex.pin_shuffle("s-1"); ex.unpin_shuffle("s-1"); ex.pinned
        set()
        """
        with self._kept_lock:
            self.pinned.discard(keep_id)
            self._pinned_raw.pop(keep_id, None)
            if keep_id in self._job_only:
                self._job_only.discard(keep_id)
                self.drop_kept_shuffle(keep_id)
            self._trim()

    def _kept_input(self, keep_id: str) -> tuple[int, int]:
        """Records (of buckets that know their count) and bytes (of pickled ones) of a kept output."""
        found = self.kept.get(keep_id)
        records = size = 0
        for row in found[1] if found is not None else ():
            for b in row:
                if type(b) is FileBlock:
                    records += b.records
                elif type(b) is _Ref:
                    records += len(b.records)
                else:
                    size += len(b)
        return records, size

    def _kept_output(self, keep_id: str) -> list[list] | None:
        with self._kept_lock:
            found = self.kept.pop(keep_id, None)
            if found is None:
                return None
            self.kept[keep_id] = found  # most recently used now
            return found[1]

    def has_kept_shuffle(self, keep_id: str) -> bool:
        return keep_id in self.kept

    def drop_kept_shuffle(self, keep_id: str) -> None:
        with self._kept_lock:
            found = self.kept.pop(keep_id, None)
        if found is not None:
            self._discard(found[1])

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
        with self._kept_lock:
            self.kept.clear()
        self.cache_dir.remove()
        if self._pool is not None:
            self._pool.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
