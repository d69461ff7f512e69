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
from operator import itemgetter
from typing import Any, Callable, Iterable, Iterator

from ..errors import CacheLostError
from ..physical.operators import BroadcastJoinOp, ReadMaterialized, ReadSource, ShuffleRead
from ..physical.stage import Materialize, PhysicalPlan, ShuffleWrite, Stage
from .local_pool import (DEFAULT_MIN_BYTES, DEFAULT_MIN_RECORDS, FileBlock, LocalPool, estimated_input,
                         StageRun, walk_ops, moved_out, moves_records, moving_stages, new_job_id, pool_share,
                         source_reads, stage_tables, write_blocks)
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
            # (a running stage's outputs are filled by index: None until its task finished)
            outputs[:] = [buckets if buckets is None else to_disk(buckets, self.spill_dir, "shuffle")
                          for buckets in outputs]
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
        # a pool stage's buckets are files of the job (a stage of a pool job may run here, see ``_stage``)
        key = self.key
        if maps is None and shuffle_id in self.once:
            return _handed_over(rows, reduce_index, key)
        return [b.load(key) if type(b) is FileBlock else b for b in (buckets[reduce_index] for buckets in rows)]

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


def _handed_over(rows: list[list], reduce_index: int, key: bytes) -> Iterator:
    """Bucket ``reduce_index`` of every map output of a shuffle read once (``hands_over``), each taken
    out of the job's blocks as its reader reaches it: a bucket is freed as soon as the reader moves on
    to the next one, while its records are still in the CPU's caches (freed with the job's blocks at
    its end, groupByKey's emptied lists and their pairs were visited again cold)."""
    for buckets in rows:
        b = buckets[reduce_index]
        if type(b) is FileBlock:   # a task process's file stays (a pool stage may still write rows)
            yield b.load(key)
        else:
            buckets[reduce_index] = []
            yield b


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


_FIRST, _SECOND = itemgetter(0), itemgetter(1)


def groups_unchangeable(records: list) -> bool:
    """``unchangeable`` for the ``(k, [values])`` groups of groupByKey's grouped shuffle: keys and
    values that nothing can change in place, in lists. The lists themselves may be kept by reference:
    no reader changes them (the reduce side copies a kept output's first list of a key and extends the
    copy; user code only ever sees that copy).

    >>> groups_unchangeable([("a", [1, 2]), (("b", 1), ["x"])]), groups_unchangeable([("a", [[1]])])
    (True, False)
    """
    if not records:
        return True
    if set(map(type, records)) != {tuple} or set(map(len, records)) != {2} or \
            set(map(type, map(_SECOND, records))) != {list}:
        return False
    return unchangeable([tuple(map(_FIRST, records)), tuple(chain.from_iterable(map(_SECOND, records)))])


#: records of a bucket whose types decide how it is kept
_SAMPLE = 64


class _Ref:
    """A bucket kept by reference (copy-on-nothing). When it was kept a sample of its records could
    not be changed in place; every record is checked before its first reuse (``checked``), and a
    bucket that fails is never read again (a job may have changed its records in place). ``grouped``:
    its records are groupByKey's ``(k, [values])`` (checked by ``groups_unchangeable``)."""

    __slots__ = ("records", "checked", "grouped")

    def __init__(self, records: list, grouped: bool = False):
        self.records = records
        self.checked = False
        self.grouped = grouped

    def unchangeable(self) -> bool:
        return groups_unchangeable(self.records) if self.grouped else unchangeable(self.records)


class _OnDisk:
    """A spilled bucket kept by its spill files (``spill.linked``): every read unpickles fresh records,
    and nothing was read back to keep it. ``files`` deletes the files when the last kept output (or
    running job) that holds them lets go."""

    __slots__ = ("records", "files")

    def __init__(self, records: SpilledRecords, files: OwnedFiles):
        self.records = records
        self.files = files


def _keepable(bucket: Any, grouped: bool = False) -> Any:
    """A finished bucket as a kept output holds it: a task process's block file as it is (each read
    decodes fresh objects); the list itself (``_Ref``) when a sample of its records cannot change, so
    that a job nothing reuses pays almost nothing; else pickled and compressed, so that every later
    read gets fresh objects (a reduce may merge into its combiners in place, a user function may
    change a record's list). ``grouped``: a bucket of groupByKey's grouped shuffle, whose value lists
    no reader changes (``groups_unchangeable``): kept by reference when its keys and values cannot
    change (pickling them cost a fifth of a one-shot groupByKey)."""
    if type(bucket) is FileBlock:
        return bucket
    if type(bucket) is list:
        sample = bucket[::max(1, len(bucket) // _SAMPLE)]
        if groups_unchangeable(sample) if grouped else unchangeable(sample):
            return _Ref(bucket, grouped)
    return compress(serialize(bucket))


def _checked(kept: list[list]) -> bool:
    """Every by-reference bucket of a kept output checked whole (once: it cannot change after)."""
    for row in kept:
        for b in row:
            if type(b) is _Ref and not b.checked:
                if not b.unchangeable():
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
    grouped, bucket = bucket.grouped, bucket.records
    n = len(bucket)
    if not n:
        return sys.getsizeof(bucket)
    sample = bucket[::max(1, n // 16)]
    per = sum(sys.getsizeof(r) + sum(map(sys.getsizeof, r)) for r in sample)
    if grouped:  # and the values in each group's list
        per += sum(map(sys.getsizeof, chain.from_iterable(map(_SECOND, sample))))
    return sys.getsizeof(bucket) + int(per / len(sample) * n)


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


def _in_order(finished: Iterator[tuple[int, Any]], order: list[int]) -> Iterator[tuple[int, Any]]:
    """``(partition, value)`` pairs in ``order``, from pairs in the order they finished."""
    done: dict[int, Any] = {}
    want = iter(order)
    p = next(want, None)
    for q, value in finished:
        done[q] = value
        while p is not None and p in done:
            yield p, done.pop(p)
            p = next(want, None)


def _partitions(parts: list[int]) -> str:
    """``partitions 1-2`` for ``[1, 2]``, ``partition 3`` for ``[3]``."""
    return f"partitions {parts[0]}-{parts[-1]}" if len(parts) > 1 else f"partition {parts[0]}"


def _nothing_held(op: Any) -> bool:
    return False


def _as_files(parts: list, path: str, key: bytes) -> list[FileBlock]:
    """Partitions (lists, spilled records, file blocks) as file blocks: those held here written to ``path``."""
    held = [i for i, p in enumerate(parts) if type(p) is not FileBlock]
    written = iter(write_blocks(path, [parts[i] for i in held], key)) if held else iter(())
    return [p if type(p) is FileBlock else next(written) for p in parts]


class _PoolJob:
    """What one job needs to run stages on the task processes: its id and directory (shuffle files and
    shared subplans, removed at its end), its functions pickled once (without the parallelized data),
    each parallelized partition pickled once, and the file form of blocks an in-process stage left in
    memory (written once, when a pool stage first reads them)."""

    def __init__(self, executor: "LocalExecutor", plan: PhysicalPlan, action: Callable[[Iterator], Any],
                 blocks: _MemoryBlocks):
        self.ex, self.blocks = executor, blocks
        # pickled up front, even if every stage ends up here: an unpicklable function fails every job
        # that could go to the pool, named as on the cluster, not only those whose stages did
        self.functions = dumps_function(({s.id: s for s in plan.stages}, action), strip=without_source_data)
        self.id = new_job_id()
        self.dir = tempfile.mkdtemp(prefix=f"job-{self.id}-", dir=executor._work_dir())
        self._pickled: dict[tuple[str, int], bytes] = {}
        self._filed: dict[int, list[list[FileBlock]]] = {}
        #: tasks per task process, and what was decided where (``explain(analyze=True)``)
        self.per_slot: dict[str, int] = {}
        self.notes: list[str] = []

    def note(self, stage: Stage, text: str) -> None:
        self.notes.append(f"{stage.name}: {text}")

    def sources(self, op: ReadSource, i: int) -> bytes:
        found = self._pickled.get((op.source_id, i))
        if found is None:
            found = self._pickled[(op.source_id, i)] = serialize(op.slices[i])
        return found

    def _held(self, op: Any) -> list:
        """The blocks ``op`` reads that are held in this process (a pool stage needs them written)."""
        if isinstance(op, ShuffleRead):
            if op.shuffle_id in self._filed:
                return []
            rows = self.blocks.reused.get(op.shuffle_id) or self.blocks.shuffles.get(op.shuffle_id) or ()
            return [b for row in rows for b in row if type(b) is not FileBlock]
        parts = self.blocks.job_data.get(op.cache_id)
        if parts is None:
            parts = self.ex.cache.get(op.cache_id) or ()
            if op.cache_id in self.ex._cache_files:
                return []
        return [p for p in parts if type(p) is not FileBlock]

    def in_memory(self, op: Any) -> bool:
        """Whether the blocks ``op`` reads are held in this process (a pool stage needs them written)."""
        return bool(self._held(op))

    def reads_held(self, stage: Stage) -> bool:
        """Whether ``stage`` reads blocks held in this process (a pool stage needs them written)."""
        return any(isinstance(op, (ShuffleRead, ReadMaterialized)) and self.in_memory(op) for op in walk_ops(stage.root))

    def held_records(self, stage: Stage) -> tuple[int, int]:
        """Records of the blocks held here that ``stage``'s tasks read, all of which this process writes
        before the first of them runs on the task processes (a kept bucket pickled here: its bytes / 8);
        and of those, the ones a broadcast join's small side holds (every task process reads them all,
        once)."""
        builds = {id(op.build) for op in walk_ops(stage.root) if isinstance(op, BroadcastJoinOp)}
        count = [0, 0]
        for op in walk_ops(stage.root):
            if isinstance(op, (ShuffleRead, ReadMaterialized)):
                for b in self._held(op):
                    t = type(b)
                    count[id(op) in builds] += (len(b) if t is list else len(b.records) if t is _Ref or t is _OnDisk
                                                else len(b) // 8 if t is bytes else getattr(b, "count", 0))
        return count[0] + count[1], count[1]

    def source_records(self, stage: Stage, p: int) -> tuple[int, int]:
        """Records of parallelized data that task ``p`` of ``stage`` reads (pickled here, unpickled there):
        ``(per task, per process)``, the latter the small side of a broadcast join, which a task process
        decodes and builds a table of once per stage."""
        build = set()
        for op in walk_ops(stage.root):
            if isinstance(op, BroadcastJoinOp):
                source_reads(op.build, 0, build)
        count = [0, 0]
        for op, i in source_reads(stage.root, p, set()):
            if op.slices is not None:
                count[(op, i) in build] += len(op.slices[i])
        return count[0], count[1]

    def shuffle_rows(self, shuffle_id: int) -> list[list[FileBlock]]:
        """Every map task's buckets of a shuffle as file blocks (a kept output of an in-process job, or
        buckets an in-process stage of this job made, are written once)."""
        filed = self._filed.get(shuffle_id)
        if filed is not None:
            return filed
        kept = self.blocks.reused.get(shuffle_id)
        rows = kept if kept is not None else self.blocks.shuffles[shuffle_id]
        key = self.ex._key
        filed = self._filed[shuffle_id] = [
            row if all(type(b) is FileBlock for b in row) else
            write_blocks(os.path.join(self.dir, f"held-{shuffle_id}-{i}"),
                         [kept_bucket(b, key) for b in row] if kept is not None else row, key)
            for i, row in enumerate(rows)]
        return filed

    def start(self, stage: Stage, parts: list[int], limit: int | None = None, feed: bool = False) -> StageRun:
        """Hand ``parts`` of ``stage`` to the task processes now (more can be ``add``ed later), at most
        ``limit`` at once (default: all of them); ``feed``: from a thread (``StageRun.feed``), while this
        one runs tasks of its own."""
        ex = self.ex
        assert ex._pool is not None
        ex._pool.budget, ex._pool.profile = ex.task_memory, ex.profile   # read per job, as in-process
        tables = stage_tables(stage, self.shuffle_rows, lambda c: ex._cached_blocks(c, self.blocks.job_data, self.dir))
        out = stage.output
        # a cache outlives the job: its files go to the executor's directory
        where = ex._work_dir() if isinstance(out, Materialize) and out.scope == "context" else self.dir
        run = StageRun(ex._pool, self.id, self.functions, where, stage, tables, self.per_slot, self.sources, limit)
        run.add(parts, hand_out=not feed)
        if feed:
            run.feed()
        return run

    @staticmethod
    def finished(run: StageRun, m: StageMetrics, action: Callable[[Iterator], Any] | None) -> Iterator[tuple[int, Any]]:
        """``(partition, value)`` of ``run``'s tasks as they finish: a map task's buckets and a
        materialised partition as file blocks, a result as its value."""
        shuffle = isinstance(run.stage.output, ShuffleWrite)
        for p, reply, blobs in run.results():
            _add_pool_task(m, reply)
            if action is not None:
                yield p, deserialize(blobs[0])
            else:
                yield p, reply["blocks"] if shuffle else reply["blocks"][0]

    def movable(self, outputs: list[list], budget: int) -> list[list] | None:
        """A finished map output to keep for later jobs, its files moved out of the job's directory (they
        outlive the job; nothing is read); None when its files alone are over ``budget``."""
        files = {b.path: b for row in outputs for b in row if type(b) is FileBlock and b.path.startswith(self.dir)}
        if sum(b.length for row in outputs for b in row if type(b) is FileBlock) > budget:
            return None
        moved = {path: os.path.join(self.ex._work_dir(), f"kept-{os.path.basename(path)}") for path in files}
        for old, new in moved.items():
            os.rename(old, new)
        return [[dataclasses.replace(b, path=moved[b.path]) if type(b) is FileBlock and b.path in moved else b
                 for b in row] for row in outputs]

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


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
                 pool_min_records: int = DEFAULT_MIN_RECORDS, pool_min_bytes: int = DEFAULT_MIN_BYTES,
                 pool_policy: str = "auto"):
        if pool_policy not in ("auto", "pool", "mixed"):
            raise ValueError(f"pool_policy must be 'auto', 'pool' or 'mixed', got {pool_policy!r}")
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
        #: cache id -> its partitions written for the task processes (the lists stay in ``cache``)
        self._cache_files: dict[str, list[FileBlock]] = {}
        #: where a pool job's stages run: "auto" (moving stages probe their first partition here and go
        #: where it pays), "pool" (every stage on the pool) or "mixed" (probe here, the rest on the pool:
        #: the test suite's way of running every job across both homes)
        self.pool_policy = pool_policy

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
        probed = [s.id for s in plan.stages if moves_records(s, None, _nothing_held)]
        if not probed or self.pool_policy == "pool":
            return f"on {self.processes} task processes"
        return (f"on {self.processes} task processes; stage{'s' if len(probed) > 1 else ''} "
                f"{', '.join(map(str, probed))} move{'' if len(probed) > 1 else 's'} every record: "
                f"{'each runs its' if len(probed) > 1 else 'it runs its'} first partition in-process, and "
                f"that partition's time decides where the others run")

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
        spill_dir = SpillDir("job")
        blocks = _MemoryBlocks(self.cache, spill_dir, self.task_memory, self._key)
        blocks.once = plan.read_once - {s.output.shuffle_id for s in plan.stages
                                        if isinstance(s.output, ShuffleWrite) and s.output.keep_id is not None}
        pool = None
        if self._pool is not None and self.placement(plan).startswith("on ") and self._pool.try_acquire():
            try:
                pool = _PoolJob(self, plan, action, blocks)
            except BaseException:
                self._pool.release()
                spill_dir.remove()
                raise
        try:
            with _fewer_collections():
                yield from self._run(plan, action, partitions, blocks, metrics, start, pool)
        finally:
            blocks.shuffles.clear()
            blocks.job_data.clear()
            spill_dir.remove()
            if pool is not None:
                pool.close()
                self._pool.release()  # type: ignore[union-attr]
                self._empty_trash()

    def _cached_blocks(self, cache_id: str, job_data: dict[str, list], job_dir: str) -> list[FileBlock]:
        """A materialised dataset's partitions as file blocks for the task processes. Partitions held in
        memory are written once (a cache's files stay beside it until it is dropped, so that in-process
        jobs keep reading the lists)."""
        parts = job_data.get(cache_id)
        if parts is None:
            parts = self.cache.get(cache_id)
            if parts is None:
                raise CacheLostError(f"cached dataset {cache_id} was dropped while a job read it", cache_id)
            if all(type(p) is FileBlock for p in parts):
                return parts
            filed = self._cache_files.get(cache_id)
            if filed is None:
                path = os.path.join(self._work_dir(), f"cache-{cache_id}-{new_job_id()}")
                filed = self._cache_files[cache_id] = _as_files(parts, path, self._key)
            return filed
        if not all(type(p) is FileBlock for p in parts):
            parts[:] = _as_files(parts, os.path.join(job_dir, f"shared-{cache_id}"), self._key)
        return parts

    def _task(self, stage: Stage, p: int, blocks: _MemoryBlocks, m: StageMetrics,
              action: Callable[[Iterator], Any] | None = None) -> Any:
        """Run one task in this process and fold its figures into ``m``; its ``TaskResult``. (CPU time
        is taken per stage: reading the thread's CPU clock costs microseconds, as much as a tiny task.)"""
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
        return r

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
             blocks: _MemoryBlocks, metrics: JobMetrics, start: float,
             pool: "_PoolJob | None") -> Iterator[tuple[int, Any]]:
        """The one stage loop of both homes: each stage runs here, on the task processes (``pool``), or
        its first partition here and the rest where that partition's time says (``_stage``). Outputs stay
        where they were made (lists in ``blocks``, or files the task processes wrote) and each reader gets
        them in its own form."""
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
                values.extend([None] * stage.num_partitions)   # filled as tasks finish, here or there
                for p, value in self._stage(stage, range(stage.num_partitions), blocks, m, pool, None, progress):
                    values[p] = value
                if isinstance(out, Materialize) and out.scope == "context":
                    # a cache outlives the job: its spilled partitions move to the executor's directory
                    self.cache[out.cache_id] = relocate(values, self.cache_dir)
                elif isinstance(out, ShuffleWrite) and out.keep_id is not None:
                    if pool is not None:
                        # a pinned output (read next by the adaptive job that pinned it) is kept whatever its size
                        kept = pool.movable(values, sys.maxsize if out.keep_id in self.pinned else self.task_memory)
                        if kept is None:
                            continue  # its files alone are over the budget: not kept
                        values[:] = kept
                    self._keep(out.keep_id, values, out.grouped)
            stage = plan.result_stage
            m = metrics.stage(stage.id, "result")
            if pool is None:   # in order already (and the shortest way: tiny jobs feel every generator)
                yield from self._here(stage, partitions, blocks, m, action, progress)
            else:
                yield from _in_order(self._stage(stage, partitions, blocks, m, pool, action, progress), partitions)
        finally:
            if progress is not None:
                progress.close()
            metrics.seconds = time.perf_counter() - start
            here = sum(s.tasks for s in metrics.stages.values())
            if pool is not None:
                metrics.tasks_per_worker.update(pool.per_slot)
                metrics.placement.extend(pool.notes)
                here -= sum(pool.per_slot.values())
            if here or pool is None:
                metrics.tasks_per_worker["local"] = here
            metrics.finish()

    def _stage(self, stage: Stage, parts: Iterable[int], blocks: _MemoryBlocks, m: StageMetrics,
               pool: "_PoolJob | None", action: Callable[[Iterator], Any] | None,
               progress: Any) -> Iterator[tuple[int, Any]]:
        """Run ``parts`` of ``stage``; yield ``(partition, value)`` as they finish (not in order).

        On a pool job, a stage that moves every record between processes (``moves_records``) runs its
        first partition here while the task processes start on the next ones; that partition's time
        decides how many of the others go there (``pool_share``). Every other stage runs there."""
        here = list(parts)
        if pool is None or not here:
            yield from self._here(stage, here, blocks, m, action, progress)
            return
        why = moves_records(stage, action, pool.in_memory)
        if why is None or self.pool_policy == "pool":
            pool.note(stage, "on the task processes" + (f" ({why})" if why else ""))
            yield from pool.finished(pool.start(stage, here), m, action)
            return
        if len(here) == 1:
            pool.note(stage, f"in-process: a single task that {why}")
            yield from self._here(stage, here, blocks, m, action, progress)
            return
        # while the first partition runs here, N - 1 task processes start on the next ones: N busy
        # processes on N cores, so the probe's time is its own, and nothing is lost if the pool pays.
        # Not when the stage reads blocks held here: the pool would need them written first, and that
        # is what the probe is to decide.
        held = pool.reads_held(stage)
        first, ahead = here[0], [] if held else here[1:self.processes]
        later = here[1 + len(ahead):]
        # this process runs tasks of the stage too: N - 1 task processes beside it fill N cores (the test
        # suite's "mixed" sends every task there, on every process)
        mixed = self.pool_policy == "mixed"
        limit = None if mixed else self.processes - 1
        run = pool.start(stage, ahead, limit, feed=not mixed) if ahead else None
        try:   # (an error or an early close waits for the tasks handed out)
            c0 = time.thread_time()
            r = self._in_process(stage, first, blocks, m, action, progress)
            # CPU time: what another core can take over; wall time would mostly measure how busy the
            # machine is (a function that waits on I/O looks cheap here: see the README)
            seconds = time.thread_time() - c0
            m.cpu_seconds += seconds
            # records that would cross: parallelized data and blocks held here in (a broadcast join's
            # small side once per process), and what leaves a task unless an action folds it (a result
            # other than collect's)
            written = 0
            if not held:
                moved_in, setup = pool.source_records(stage, first)
            else:   # written here all at once; each task reads its share, each process a broadcast side whole
                written, setup = pool.held_records(stage)
                moved_in = (written - setup) // stage.num_partitions
            collected = getattr(action, "counts", None) is len
            out = moved_out(stage, r.records_out, r.value) if action is None or collected else 0
            k, there_s, here_s = pool_share(seconds, moved_in, out, len(later), self.processes, collected, setup,
                                            len(ahead), written if later else 0)
            if mixed:
                k = len(later)
            what = (f"partition {first} in-process ({seconds * 1000:,.1f} ms, {r.records_in:,} records in, "
                    f"{r.records_out if action is None or collected else 0:,} out; the stage {why})")
            if ahead:
                what += f", {_partitions(ahead)} on the task processes meanwhile"
            if later:
                split = ("on the task processes" if k == len(later) else "in-process" if not k else
                         f"split: {k} on the task processes, {len(later) - k} in-process")
                what += (f", then the other {len(later)} {split}: estimated {there_s * 1000:,.1f} ms against "
                         f"{here_s * 1000:,.1f} ms all in-process")
            pool.note(stage, what)
            noted = len(pool.notes) - 1
            yield first, r.value
            if k:
                # the queue goes out as task processes free up, while tasks run here
                if run is None:
                    run = pool.start(stage, later[:k], limit, feed=not mixed)
                else:
                    run.add(later[:k], hand_out=mixed)
                    if not mixed:
                        run.feed()
            # here meanwhile (handing the task processes more between tasks), then their results
            done = []
            for p, value in self._here(stage, later[k:], blocks, m, action, progress):
                done.append((p, value))
                if run is not None:
                    run.pump()
            if run is not None and not mixed:
                # with nothing else to do, this process takes back what no task process has started:
                # a task here ends sooner than one queued there (and an estimate that favoured the pool
                # too much corrects itself)
                taken = []
                while True:
                    run.pump()
                    p = run.steal()
                    if p is None:
                        break
                    taken.append(p)
                    done.extend(self._here(stage, [p], blocks, m, action, progress))
                if taken:
                    pool.notes[noted] += f"; this process took back {_partitions(sorted(taken))}, not yet started there"
            if run is not None:
                yield from pool.finished(run, m, action)
            yield from done
        finally:
            if run is not None:
                run.close()

    def _here(self, stage: Stage, parts: list[int], blocks: _MemoryBlocks, m: StageMetrics,
              action: Callable[[Iterator], Any] | None, progress: Any) -> Iterator[tuple[int, Any]]:
        c0 = time.thread_time()
        for p in parts:
            yield p, self._in_process(stage, p, blocks, m, action, progress).value
        m.cpu_seconds += time.thread_time() - c0

    def _in_process(self, stage: Stage, p: int, blocks: _MemoryBlocks, m: StageMetrics,
                    action: Callable[[Iterator], Any] | None, progress: Any) -> Any:
        """One task here; a map or materialise task's growth counts against the job's memory budget."""
        if action is not None:
            r = self._task(stage, p, blocks, m, action)
        else:
            before, spilled = rss(), m.spill_bytes
            r = self._task(stage, p, blocks, m)
            if m.spill_bytes > spilled and isinstance(stage.output, ShuffleWrite):
                # a task that spilled had more than its budget: the rest of its output goes to disk at
                # once (held until the job's blocks reach the budget, it doubled the peak)
                r.value = to_disk(r.value, blocks.spill_dir, "shuffle")
            blocks.grew(rss() - before, self.cache_dir)
        if progress is not None:
            progress.update(stage.id, m.tasks, stage.num_partitions, m.records_out)
        return r

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
        self._trash.extend({p.path for p in self._cache_files.pop(cache_id, ())})
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

    def _discard(self, kept: list[list]) -> None:
        """Delete the files of a dropped kept output (when no pool job may be reading them)."""
        self._trash.extend({b.path for row in kept for b in row if type(b) is FileBlock})
        self._empty_trash()

    def _keep(self, keep_id: str, outputs: list[list], grouped: bool = False) -> None:
        """Keep a finished shuffle's buckets for later jobs, before the reduce side reads them: by
        reference when their records cannot change, else pickled and compressed (``_keepable``);
        spilled ones by their spill files (``_OnDisk``: reading a spilled output back to pickle it cost
        a quarter of a spilling groupByKey). They count against the task memory budget: an output larger than the budget is not kept, and
        the least recently used ones are dropped to make room (a later job then computes them
        again). Records pickle refuses are not kept either. ``grouped``: groupByKey's grouped shuffle
        (``_keepable``)."""
        if keep_id in self.pinned:
            self._keep_pinned(keep_id, outputs, grouped)
            return
        on_disk = sum(r.length for buckets in outputs for b in buckets if type(b) is SpilledRecords for r in b.runs)
        if on_disk > self.task_memory:
            return  # it would not fit when kept
        try:
            kept = self._keepable_rows(outputs, grouped)
        except (pickle.PicklingError, TypeError, AttributeError, OSError):
            return
        size = sum(_kept_size(b) for buckets in kept for b in buckets)
        with self._kept_lock:
            if size > self.task_memory:
                self._discard(kept)
                return
            self.kept[keep_id] = (size, kept)
            self._trim()

    def _keepable_rows(self, outputs: list[list], grouped: bool = False) -> list[list]:
        """An output's buckets as a kept output holds them (``_keepable``); spilled ones by their files,
        linked into the executor's directory (``_OnDisk``)."""
        if not any(type(b) is SpilledRecords for buckets in outputs for b in buckets):
            return [[_keepable(b, grouped) for b in buckets] for buckets in outputs]
        rows, files = linked(outputs, self.cache_dir)
        return [[_OnDisk(b, files) if type(b) is SpilledRecords else _keepable(b, grouped) for b in buckets]
                for buckets in rows]

    def _keep_pinned(self, keep_id: str, outputs: list[list], grouped: bool = False) -> None:
        """A pinned output: its buckets by reference for the job that pinned it (which reads them as
        it would have read its own, so nothing is copied or checked), spilled ones moved out of the
        job's directory; and, when shuffle reuse may want it later and it can be, kept for later
        jobs too as ``_keep`` keeps outputs (checked and within the budget once unpinned)."""
        kept: list[list] | None = None
        size = 0
        if keep_id not in self._job_only:
            try:
                kept = self._keepable_rows(outputs, grouped)
                size = sum(_kept_size(b) for buckets in kept for b in buckets)
            except (pickle.PicklingError, TypeError, AttributeError, OSError):
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
                elif type(b) is _Ref and b.grouped:
                    records += sum(map(len, map(_SECOND, b.records)))   # values, not groups
                elif type(b) is _Ref or type(b) is _OnDisk:
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
