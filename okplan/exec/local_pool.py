"""``local[N]`` on N cores: the stages of a big enough job run on a ``TaskPool`` of long-lived task
processes (forked on Linux, so functions of ``__main__`` work), the same pool the cluster worker uses.

The client process keeps the scheduling and never runs a task of a pool job; every task runs the one
task runner (``run_task``) in a child. Data between stages moves through files in the job's directory:
a map task writes all its buckets into one file (each bucket a sealed lz4 block of pickles, see
``serialization.encode_block``) and replies with their offsets; a reduce task reads the spans of its
bucket from every map file. Only small headers, the job's pickled functions (once per process and job)
and the result stage's values cross the pipes. Files, not pipes through the client, keep memory
bounded: a shuffle's buckets never sit in the client, and the OS page cache makes reading them back
cheap.

Which jobs go to the pool is ``placement``: a job whose sources hold at least ``min_records`` records
(files: ``min_bytes`` bytes), with more than one task to run. Smaller jobs run in-process, where a
1,000-record job takes well under a millisecond; a job that cannot pay for the pipes gains nothing.

>>> ctx = Context("local[2]")                                        # doctest: +SKIP
>>> ctx.range(0, 1_000_000, numSlices=4).map(lambda x: x * 2).sum()  # doctest: +SKIP
999999000000
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from ..errors import CacheLostError, OkplanError, TaskProcessDiedError
from ..physical.operators import (BroadcastJoinOp, CartesianOp, CoalesceOp, CoGroupOp, CombineOp, HashJoinOp, LocalAggregate, PhysOp,
                                  Pipe, ReadFiles, ReadMaterialized, ReadRange, ReadSource, ShuffleRead, UnionOp,
                                  ZipOp)
from ..physical.stage import Materialize, PhysicalPlan, ShuffleWrite, Stage
from . import accumulators
from .memory import TaskMemory
from .pool import TaskPool
from .profile import profiled
from .serialization import (compress, decode_block, deserialize, dumps_function, encode_block, loads_function,
                            open_block, seal_compressed, serialize)
from .spill import SpillDir
from .task import annotate, run_task, task_place

#: estimated source records from which a job runs on the pool (the benchmark's smallest real job has 200k)
DEFAULT_MIN_RECORDS = 50_000
#: bytes of input files from which a file job runs on the pool
DEFAULT_MIN_BYTES = 4 << 20
#: attempts of a task whose process dies before the job fails (as the cluster's ``max_crashes``)
MAX_CRASHES = 3


@dataclass(frozen=True)
class FileBlock:
    """A sealed block (one list of records) at ``offset`` of ``path``: a materialised partition or a
    shuffle bucket that a task process wrote. ``records`` is its length, for size estimates."""

    path: str
    offset: int
    length: int
    records: int

    def load(self, key: bytes) -> list:
        if not self.length:
            return []
        return decode_block(self._read(), key, self._what())

    def body(self, key: bytes) -> bytes:
        """The block's pickled records, compressed as ``serialization.compress`` does (MAC checked)."""
        if not self.length:
            return _EMPTY_BODY
        return bytes(open_block(self._read(), key, self._what()))

    def _read(self) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read(self.length)

    def _what(self) -> str:
        return f"block {os.path.basename(self.path)}"


_EMPTY_BODY = compress(serialize([]))


def write_blocks(path: str, parts: list[list], key: bytes) -> list[FileBlock]:
    """Write each list of ``parts`` as one block of one file; their ``FileBlock``s (empty ones cost nothing)."""
    return _write(path, ((encode_block(part, key), len(part)) if part else (b"", 0) for part in parts))


def write_bodies(path: str, bodies: list[bytes], key: bytes) -> list[FileBlock]:
    """``write_blocks`` for parts already pickled and compressed (``FileBlock.body``, a kept shuffle);
    their record counts are unknown (0)."""
    return _write(path, ((seal_compressed(b, key), 0) for b in bodies))


def _write(path: str, blocks: Iterable[tuple[bytes, int]]) -> list[FileBlock]:
    out: list[FileBlock] = []
    offset = 0
    with open(path, "wb") as f:
        for data, records in blocks:
            f.write(data)
            out.append(FileBlock(path, offset, len(data), records))
            offset += len(data)
    return out


# -- placement --------------------------------------------------------------------------------------

def walk_ops(root: PhysOp) -> Iterator[PhysOp]:
    stack = [root]
    while stack:
        op = stack.pop()
        yield op
        stack.extend(op.children())


def estimated_input(plan: PhysicalPlan, cache: dict[str, list]) -> tuple[int, int]:
    """Records of the plan's in-memory and range sources, bytes of its file sources."""
    records = size = 0
    for stage in plan.stages:
        for op in walk_ops(stage.root):
            if isinstance(op, ReadSource):
                records += op.records or sum(map(len, op.slices or ()))
            elif isinstance(op, ReadRange):
                records += len(range(op.start, op.stop, op.step))
            elif isinstance(op, ReadFiles):
                for splits in op.parts:
                    for s in splits:
                        length = getattr(s, "length", None)
                        size += length if isinstance(length, int) and length >= 0 else DEFAULT_MIN_BYTES
            elif isinstance(op, ReadMaterialized):
                for part in cache.get(op.cache_id) or ():
                    records += part.records if isinstance(part, FileBlock) else len(part)
    return records, size


def moving_stages(plan: PhysicalPlan) -> int:
    """Stages of ``plan`` whose every record goes to another process on the pool: shuffle writes
    without a map-side combine (``groupByKey``, joins, sorts, ``partitionBy``) and materialised
    datasets (``cache()``, shared subplans, sort inputs)."""
    moving = 0
    for stage in plan.stages[:-1]:
        out = stage.output
        if isinstance(out, ShuffleWrite):
            moving += out.reused_from is None and type(stage.root) is not CombineOp
        elif isinstance(out, Materialize):
            moving += 1
    return moving


#: What moving one record costs, in seconds, from measurements of small records (``(int, int)`` pairs,
#: words; memo-less pickle, lz4, a file in the page cache) on the reference 2-core machine:
#: a task process pickles, compresses and writes it, and the next one reads and unpickles it
MOVE_SECONDS = 0.25e-6
#: what one value inside a group of a grouped shuffle (``groupByKey``'s ``(k, [values])``) costs to move,
#: as a share of a record: a list of values pickles and unpickles about 2.5x faster than as many pairs
#: (measured: 125k values in 10k groups 9 ms, 125k pairs 18 ms)
GROUPED_VALUE_SHARE = 0.4
#: this process pickles it (a parallelized partition, a block an in-process stage left in memory) or
#: unpickles it (a result sent back): the client's share, which no other core takes
CLIENT_SECONDS = 0.15e-6
#: a task's own work on the pool against the same work in-process (two busy cores share caches)
POOL_SLOWDOWN = 1.2
#: what a task costs the pool beyond its work (round trip, waking the process, its reply)
TASK_SECONDS = 0.3e-3


def moves_records(stage: Stage, action: Any, in_memory: Callable[[PhysOp], bool]) -> str | None:
    """Why running ``stage`` on the pool moves every record it reads or writes between processes, or
    None: its output is combined or small (then the pool costs nearly nothing per record).

    ``in_memory(op)`` says whether the blocks a ``ShuffleRead``/``ReadMaterialized`` reads are held in
    this process (an in-process stage made them): the client would have to write them for the pool.
    """
    out = stage.output
    if isinstance(out, ShuffleWrite) and type(stage.root) is not CombineOp:
        return "writes every record to a shuffle"
    if isinstance(out, Materialize):
        return "materializes every record"
    if not isinstance(out, (ShuffleWrite, Materialize)) and getattr(action, "counts", None) is len:
        return "sends every record back"  # collect, take: the action's value is the records
    for op in walk_ops(stage.root):
        if type(op) is ReadSource and op.slices is not None:
            return "reads parallelized data"
        if isinstance(op, (ShuffleRead, ReadMaterialized)) and in_memory(op):
            return "reads blocks held in this process"
    return None


def moved_out(stage: Stage, records_out: int, value: Any) -> int:
    """What a task's output (``value``, ``records_out`` records) weighs when it moves, in records: a
    grouped shuffle (``groupByKey``) moves one record per group and its values in lists (cheaper)."""
    out = stage.output
    if isinstance(out, ShuffleWrite) and out.grouped and type(value) is list:
        groups = sum(len(b) for b in value if type(b) is list)
        return groups + int(records_out * GROUPED_VALUE_SHARE)
    return records_out


def pool_share(seconds: float, records_in: int, records_out: int, remaining: int, processes: int,
               collected: bool, setup_records: int = 0, ahead: int = 0, held: int = 0) -> tuple[int, float, float]:
    """How many of the ``remaining`` tasks of a stage to queue for the task processes (the others run
    here, at the same time), when its first task took ``seconds`` in-process, reading ``records_in``
    records (that cross processes), ``records_out`` leaving it; with the estimated time of that split
    and of all in-process: ``(tasks there, seconds, seconds all here)``, from the probe's end.

    This process works beside the task processes, so ``processes - 1`` of them take tasks (more would
    only share the cores). ``ahead`` of them started a task when the probe did; ``setup_records``
    cross once per process and stage (a broadcast join's small side, whose table each process builds
    once). ``collected``: the records out come back to this process (collect), which unpickles them
    alone, as it pickles parallelized data for them. ``held``: records of blocks held here that this
    process writes for the task processes before the first task can go there.

    >>> pool_share(0.1, 10_000, 10, 3, 2, False)[0]         # costly functions: 1 there, 2 here meanwhile
    1
    >>> pool_share(0.01, 100_000, 100_000, 3, 2, True)[0]   # cheap ones, every record back: none
    0
    """
    slots = max(1, processes - 1)
    per_task = seconds * POOL_SLOWDOWN + (records_in + records_out) * MOVE_SECONDS + TASK_SECONDS
    first = per_task + setup_records * MOVE_SECONDS   # a process's first task of the stage
    # (records in that are held here are written once, before any task: ``held``)
    client = ((0 if held else records_in) + (records_out if collected else 0)) * CLIENT_SECONDS
    # when each process is free, from now: one that took a task ahead is busy until it ends
    busy = min(ahead, slots)
    free0: list[float | None] = [max(0.0, first - seconds)] * busy + [None] * (slots - busy)
    waited = max((f for f in free0 if f is not None), default=0.0)   # the tasks ahead, whatever is decided
    best, best_time = 0, max(remaining * seconds, waited)
    delay = held * CLIENT_SECONDS
    free = list(free0)
    for k in range(1, remaining + 1):
        # the k-th task goes to the process that would end it first
        ends = [delay + first if f is None else f + per_task for f in free]
        i = min(range(slots), key=ends.__getitem__)
        free[i] = ends[i]
        there = max(f for f in free if f is not None)
        t = max(delay + (remaining - k) * seconds + k * client, there)
        if t < best_time:
            best, best_time = k, t
    return best, best_time, max(remaining * seconds, waited)


#: operators whose partition i reads partition i of every child
_SAME_INDEX = (Pipe, CombineOp, LocalAggregate, CoGroupOp, HashJoinOp, ZipOp)


def source_reads(op: PhysOp, i: int, out: set[tuple[ReadSource, int]]) -> set[tuple[ReadSource, int]]:
    """Add to ``out`` the ``(source, index)`` partitions of parallelized data that partition ``i`` of
    ``op`` reads (as the task runner routes indices), so that a task gets only those."""
    t = type(op)
    if t is ReadSource:
        out.add((op, i))
    elif t in _SAME_INDEX:
        for child in op.children():
            source_reads(child, i, out)
    elif t is UnionOp:
        for part, count in zip(op.parts, op.counts):
            if i < count:
                return source_reads(part, i, out)
            i -= count
    elif t is CoalesceOp:
        for j in op.groups[i]:
            source_reads(op.child, j, out)
    elif t is CartesianOp:
        li, ri = divmod(i, op.right_count)
        source_reads(op.left, li, out)
        source_reads(op.right, ri, out)
    elif t is BroadcastJoinOp:  # the small side is one partition that every task reads whole
        source_reads(op.stream, i, out)
        source_reads(op.build, 0, out)
    else:  # an operator this routing does not know: every partition of every source below it
        for below in walk_ops(op):
            if type(below) is ReadSource:
                out.update((below, j) for j in range(below.num_partitions))
    return out


# -- the task process's side ------------------------------------------------------------------------

class _FileBlocks:
    """A task's inputs in a task process: the spans of files the client named in the request, and the
    parallelized partitions it sent along."""

    def __init__(self, tables: dict[str, dict], key: bytes, sources: dict[tuple[str, int], bytes]):
        self.tables = tables
        self.key = key
        self.sources = sources   # (source id, index) -> the pickled partition the client sent along

    def source(self, source_id: str, index: int) -> list:
        with _unpickling():
            return deserialize(self.sources[(source_id, index)])

    def shuffle_buckets(self, shuffle_id: int, reduce_index: int,
                        maps: tuple[int, int] | None = None) -> list[list]:
        rows = self.tables["shuffle"][shuffle_id]
        if maps is not None:
            rows = rows[maps[0]:maps[1]]
        with _unpickling():
            return [row[reduce_index].load(self.key) for row in rows]

    def materialized(self, cache_id: str, index: int) -> list:
        try:
            with _unpickling():
                return self.tables["mat"][cache_id][index].load(self.key)
        except FileNotFoundError:
            # unpersisted by another thread after the job was planned: the Context plans again
            raise CacheLostError(f"cached dataset {cache_id} was dropped while a job read it", cache_id) from None


@contextlib.contextmanager
def _unpickling() -> Iterator[None]:
    """No collection while records are unpickled: they make no garbage, and the collector would scan
    each new tuple again and again (unpickling then takes about twice as long)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class LocalTaskHandler:
    """The handler of a local[N] task process: runs one task of the current job per request.

    A request is ``({"job", "stage", "partition", "attempt", "dir", "src", ...}, [tables, *sources,
    functions?])``: ``sources`` are the pickled parallelized partitions the task reads (named by
    ``src``), the functions (stages without their data, and the action) come the first time this
    process sees the job. The reply is ``({"rin", "rout", "acc", "blocks"|"error"}, [value?])``.
    """

    def __init__(self, key: bytes):
        from .cluster.heap import TaskHeap, tune_collector  # noqa: PLC0415 - it imports local, which imports us

        # the client's heap, inherited by fork, is no garbage of ours: keep the collector off it (and off
        # copy-on-write pages); and collect young objects seldom, as a cluster task process does
        tune_collector()
        self.key = key
        #: the last task's output and its encoded bytes, handed to ``heap`` once its reply left
        #: (``after_reply``), which frees it while this process waits for work: off the stage's critical path
        self.heap = TaskHeap()
        self.job: str | None = None
        self.stages: dict[int, Stage] = {}
        self.action: Any = None
        self.registry: dict = {}

    def __call__(self, h: dict[str, Any], blobs: list[bytes]) -> tuple[dict, list[bytes]]:
        stage = None
        try:
            if h["job"] != self.job:
                self.job = None
                _follow_client(h["env"])
                self.registry = accumulators.begin_task()  # the job's accumulators unpickle into it
                self.stages, self.action = loads_function(blobs[-1])
                self.job = h["job"]
            stage = self.stages[h["stage"]]
            accumulators.begin_task(self.registry)
            p = h["partition"]
            # the task's own spill directory: what it spills is read back before it replies
            spill_dir = SpillDir("task")
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                sources = dict(zip(h["src"], blobs[1:]))
                inputs, memory = _FileBlocks(deserialize(blobs[0]), self.key, sources), TaskMemory(h["budget"], spill_dir)
                operators = None
                if h["profile"]:
                    with profiled(stage, self.action) as operators:
                        result = run_task(stage, p, inputs, self.action, memory)
                else:
                    result = run_task(stage, p, inputs, self.action, memory)
                t_out = time.perf_counter()
                reply, value = self._output(h, stage, p, result)
                reply["ser"] = time.perf_counter() - t_out   # pickling and writing the output
                self.heap.hold(result.value, sum(b.length for b in reply.get("blocks", ())) + sum(map(len, value)))
                result.value = None
                reply["ops"] = operators or {}
            finally:
                spill_dir.remove()
            reply["t"] = (t0, time.perf_counter(), time.thread_time() - c0)
            updates = accumulators.task_updates()
            reply["acc"] = serialize(updates) if updates else b""
            return reply, value
        except BaseException as e:  # noqa: BLE001 - every failure of user code goes back to the client
            from .cluster.remote_errors import pack_exception  # noqa: PLC0415

            accumulators.task_updates()
            if stage is not None:
                annotate(e, stage, h["partition"], self.action)
            else:
                e.add_note("okplan: while unpickling the job's functions in a local task process")
            body, blob = pack_exception(e, f"local task process {os.getpid()}")
            return {"error": body}, [blob]

    def after_reply(self) -> None:
        """The last task's output is no longer needed, now that its reply is on its way (the pool calls
        this): it is freed while this process waits for its next task (``idle``), or now if it is big."""
        self.heap.release()

    def idle(self, waiting: Callable[[], bool]) -> None:
        """Nothing to run (the pool calls this): free finished outputs until ``waiting()``."""
        self.heap.tidy(waiting)

    def _output(self, h: dict[str, Any], stage: Stage, p: int, result: Any) -> tuple[dict, list[bytes]]:
        """Buckets and materialised partitions go to a file of the job; a result's value goes back."""
        out = stage.output
        reply: dict[str, Any] = {"rin": result.records_in, "rout": result.records_out,
                                 "spill": getattr(result, "spill_bytes", 0)}
        base = os.path.join(h["dir"], f"{h['job']}-s{stage.id}-p{p}-a{h['attempt']}")
        if isinstance(out, ShuffleWrite):
            reply["blocks"] = write_blocks(base + ".shuffle", result.value, self.key)
            # bytes as every executor reports them (pickled, estimated), so that thresholds mean one thing
            reply["precs"], reply["pbytes"] = result.bucket_records, result.bucket_bytes
        elif isinstance(out, Materialize):
            reply["blocks"] = write_blocks(base + ".part", [result.value], self.key)
        else:
            return reply, [serialize(result.value)]
        return reply, []


# -- the client's side ------------------------------------------------------------------------------

class LocalPool:
    """The client's half: a lazily started ``TaskPool`` of ``processes`` children and the loop that
    runs a job's stages on it. One job at a time uses it (``try_acquire``); a job of another thread
    meanwhile runs in-process."""

    def __init__(self, processes: int, key: bytes, budget: int):
        self.processes = processes
        self.key = key
        self.budget = budget   # each task's memory budget
        self.profile = False   # time operators inside fused stages (Context(profile=True))
        self._pool: TaskPool | None = None
        self._lock = threading.Lock()
        self._known: dict[int, tuple[int, str]] = {}   # slot -> (generation, job) it has the functions of

    def try_acquire(self) -> bool:
        return self._lock.acquire(blocking=False)

    def release(self) -> None:
        self._lock.release()

    def _started(self) -> TaskPool:
        if self._pool is None:
            key = self.key
            self._pool = TaskPool(self.processes, lambda: LocalTaskHandler(key), name="okplan-local-task")
        return self._pool.start()

    def pids(self) -> list[int]:
        return self._pool.pids() if self._pool is not None else []

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
            self._known.clear()

    def run_stage(self, job: str, functions: bytes, job_dir: str, stage: Stage, partitions: list[int],
                  tables: bytes, per_slot: dict[str, int],
                  sources: Callable[[ReadSource, int], bytes]) -> Iterator[tuple[int, dict, list[bytes]]]:
        """Run ``stage`` on ``partitions``; yield ``(partition, reply, blobs)`` as tasks finish (see
        ``StageRun``)."""
        run = StageRun(self, job, functions, job_dir, stage, tables, per_slot, sources)
        run.add(partitions)
        return run.results()


#: a request this small fits a pipe's buffer (64 kB on Linux): sending it never waits for the reader
_PIPE_BYTES = 48 * 1024


class StageRun:
    """Tasks of one stage on the pool. ``add`` queues partitions and hands them to the idle task
    processes at once (so that they work while this process does something else: a probe task);
    ``results`` yields ``(partition, reply, blobs)`` as tasks finish, handing out the queue as slots
    free up. ``sources(op, i)`` is partition ``i`` of a parallelized source, pickled: each task gets
    only those it reads.

    At most ``limit`` tasks run at once (``processes - 1`` while this process runs tasks of the same
    stage: more would only share the cores); a process that ran a task of the stage, or knows the job,
    gets the next one first. While this process runs tasks itself, ``feed`` starts a thread that hands
    the queue out as soon as a task process is free (between this process's tasks would leave it idle
    for most of one); ``steal`` takes back a queued task no process has started.

    A task whose process dies is run again (``MAX_CRASHES`` attempts in all); a user error is raised
    from ``results`` with its own type, message, note and the child's traceback. Closing ``results``
    early, or ``close``, waits for the tasks already running (their processes stay in the pool).
    """

    def __init__(self, owner: LocalPool, job: str, functions: bytes, job_dir: str, stage: Stage, tables: bytes,
                 per_slot: dict[str, int], sources: Callable[[ReadSource, int], bytes], limit: int | None = None):
        self.owner, self.job, self.functions, self.job_dir = owner, job, functions, job_dir
        self.stage, self.tables, self.per_slot, self.sources = stage, tables, per_slot, sources
        self.pool = owner._started()
        #: tasks running at once at most: ``processes - 1`` while this process runs tasks of the stage too
        self.limit = limit or owner.processes
        self.todo: list[tuple[int, int]] = []   # (partition, attempt), the next one last
        self.pending = 0
        self.queued = 0   # partitions added and not yet returned
        self.ready: list[tuple[int, dict, list[bytes]]] = []   # finished, not yet returned
        self.used: set[int] = set()   # slots that ran a task of this stage
        # the feeding thread, while it runs, is the only one that touches the pool; the lock guards the
        # queue and the outcomes it shares with this thread
        self._lock = threading.Lock()
        self._feeder: threading.Thread | None = None
        self._feeding = False   # a feeding thread runs and will hand out what is queued (under the lock)
        self._stop_feeding = False
        self._wake: tuple[int, int] | None = None   # a pipe that wakes the feeding thread from its wait
        self._failed: BaseException | None = None

    def add(self, partitions: list[int], hand_out: bool = True) -> None:
        """Queue ``partitions``, and hand them to idle task processes now (``hand_out``; a feeding
        thread, when one runs, does)."""
        with self._lock:
            self.todo[:0] = [(p, 0) for p in reversed(partitions)]
            self.queued += len(partitions)
            if hand_out and not self._feeding:
                self._hand_out()

    def feed(self) -> None:
        """Hand the queued tasks to the task processes as they free up, from a thread, until the queue
        is empty or ``results``/``close`` is called: this process is about to run tasks of its own
        (and even a request's pipe write waits for a process the machine does not run at once)."""
        with self._lock:
            if self._feeding or not self.todo:
                return
            # small requests go now: writing them never waits, and a thread would first wait for the GIL
            self._hand_out(_PIPE_BYTES)
            if not self.todo:
                return
            self._feeding = True
        if self._feeder is not None:
            self._feeder.join()   # one that has just decided to end
        self._stop_feeding = False
        if self._wake is None:
            self._wake = os.pipe()
        self._feeder = threading.Thread(target=self._feed, name="okplan-local-feeder", daemon=True)
        self._feeder.start()

    def _feed(self) -> None:
        pool = self.pool
        assert self._wake is not None
        try:
            while True:
                with self._lock:
                    if not self._stop_feeding:
                        self._hand_out()
                    if not self.todo or self._stop_feeding:
                        self._feeding = False
                        return
                    # (a slot that waits for a new child: look again when it is due)
                    timeout = None if self.pending else pool.next_restart() or 0.05
                # the wait releases the GIL to the task this process runs meanwhile
                outcomes = pool.poll(timeout, wake=self._wake[0])
                with self._lock:
                    self._take(outcomes)
        except BaseException as e:  # noqa: BLE001 - raised again in the thread that reads the results
            with self._lock:
                self._failed = e
                self._feeding = False

    def _unfeed(self) -> None:
        """Stop the feeding thread (this thread uses the pool again) and raise what it met."""
        feeder = self._feeder
        if feeder is not None:
            self._stop_feeding = True
            assert self._wake is not None
            os.write(self._wake[1], b"x")
            feeder.join()
            self._feeder = None
        if self._wake is not None:
            for fd in self._wake:
                os.close(fd)
            self._wake = None
        failed, self._failed = self._failed, None
        if failed is not None:
            raise failed

    def steal(self) -> int | None:
        """Take back the last queued task that no process started, for this process to run (a task
        that killed a process once is not: it runs there again), or None."""
        with self._lock:
            for j, (p, attempt) in enumerate(self.todo):
                if attempt == 0:
                    del self.todo[j]
                    self.queued -= 1
                    return p
        return None

    def _hand_out(self, max_bytes: int | None = None) -> None:
        """Hand queued tasks to idle task processes (within ``limit``); with ``max_bytes``, only while
        a request is that small (a pipe takes it whole at once, whether the process reads it or not)."""
        pool, owner, stage = self.pool, self.owner, self.stage
        idle = pool.idle_slots()
        if len(idle) > 1:
            # a process that ran this stage first (it built the stage's broadcast table), then one that
            # has the job's functions: what a task sets up once per process is set up once
            idle.sort(key=lambda s: (s not in self.used, owner._known.get(s) != (pool.generation(s), self.job)))
        for slot in idle:
            if not self.todo or self.pending >= self.limit:
                break
            p, attempt = self.todo[-1]
            reads = sorted(source_reads(stage.root, p, set()), key=lambda r: (r[0].source_id, r[1]))
            blobs = [self.tables] + [self.sources(op, i) for op, i in reads]
            gen = pool.generation(slot)
            if owner._known.get(slot) != (gen, self.job):
                blobs.append(self.functions)
            if max_bytes is not None and sum(map(len, blobs)) > max_bytes:
                break
            self.todo.pop()
            self.used.add(slot)
            owner._known[slot] = (gen, self.job)
            header = {"job": self.job, "stage": stage.id, "partition": p, "attempt": attempt, "dir": self.job_dir,
                      "budget": owner.budget, "profile": owner.profile,
                      "src": [(op.source_id, i) for op, i in reads]}
            if len(blobs) > 1:
                header["env"] = _client_env()
            pool.submit(slot, header, blobs, tag=(p, attempt))
            self.pending += 1

    def results(self) -> Iterator[tuple[int, dict, list[bytes]]]:
        pool = self.pool
        try:
            self._unfeed()
            while self.queued:
                while self.ready:
                    self.queued -= 1
                    yield self.ready.pop()
                if not self.queued:
                    break
                self._hand_out()
                if not self.pending:
                    pool.poll(pool.next_restart() or 0.05)  # every slot waits for a new child
                    continue
                self._take(pool.poll(None))
        finally:
            self.close()

    def pump(self) -> None:
        """Take the outcomes already in and hand queued tasks to the slots they freed, without waiting
        (between tasks this process runs itself; the feeding thread does it when there is one)."""
        with self._lock:
            if self._feeding:
                return
        if self.pending:
            self._take(self.pool.poll(0))
        self._hand_out()

    def _take(self, outcomes: list) -> None:
        from .cluster.remote_errors import unpack_exception  # noqa: PLC0415

        stage = self.stage
        self.pending -= len(outcomes)  # all of them now: an early close must not wait for these again
        for o in outcomes:
            p, attempt = o.tag
            if o.died is not None:
                if attempt + 1 >= MAX_CRASHES:
                    raise TaskProcessDiedError(
                        f"{task_place(stage.name, p, stage.labels)}: the task's process "
                        f"{o.died.describe()} {MAX_CRASHES} times")
                self.todo.append((p, attempt + 1))
                continue
            if o.error is not None:
                raise OkplanError(f"a local task process failed outside user code: {o.error}")
            reply, out = o.reply
            if "error" in reply:
                raise unpack_exception(reply["error"], out[0])
            if reply["acc"]:
                accumulators.merge_updates(deserialize(reply["acc"]))
            slot = f"task process {o.slot}"
            self.per_slot[slot] = self.per_slot.get(slot, 0) + 1
            self.ready.append((p, reply, out))

    def close(self) -> None:
        """Wait for the tasks running (an error or an early close: their outcomes are dropped)."""
        try:
            self._unfeed()
        except BaseException:  # noqa: BLE001 - closing after an error: the first one is what the caller sees
            pass
        self.todo.clear()
        self.ready.clear()
        self.queued = 0
        while self.pending:
            self.pending -= len(self.pool.poll(None))


def _client_env() -> dict[str, Any]:
    """What a forked task process must learn of the client since the fork: addPyFile's sys.path
    entries and where addFile put its files (the same machine, so the same paths)."""
    from . import sidefiles  # noqa: PLC0415

    return {"sys_path": list(sys.path), "files": sidefiles._root}


def _follow_client(env: dict[str, Any]) -> None:
    from . import sidefiles  # noqa: PLC0415

    added = [p for p in env["sys_path"] if p not in sys.path]
    if added:
        sys.path[:] = env["sys_path"]
        importlib.invalidate_caches()
    if env["files"] is not None:
        sidefiles._root = env["files"]


def stage_tables(stage: Stage, shuffles: Callable[[int], list[list[FileBlock]]],
                 mats: Callable[[str], list[FileBlock]]) -> bytes:
    """The file blocks ``stage`` reads (every partition's: a union or coalesce reads other indices)."""
    shuffle: dict[int, list[list[FileBlock]]] = {}
    mat: dict[str, list[FileBlock]] = {}
    for op in walk_ops(stage.root):
        if isinstance(op, ShuffleRead):
            shuffle[op.shuffle_id] = shuffles(op.shuffle_id)
        elif isinstance(op, ReadMaterialized):
            mat[op.cache_id] = mats(op.cache_id)
    return serialize({"shuffle": shuffle, "mat": mat})


def new_job_id() -> str:
    return uuid.uuid4().hex[:12]


__all__ = ["LocalPool", "StageRun", "LocalTaskHandler", "FileBlock", "write_blocks", "write_bodies", "estimated_input", "moving_stages", "moves_records", "moved_out", "pool_share", "walk_ops", "source_reads", "stage_tables",
           "dumps_function", "DEFAULT_MIN_RECORDS", "DEFAULT_MIN_BYTES", "MAX_CRASHES", "new_job_id"]
