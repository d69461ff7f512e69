"""The task runner: computes one partition of one stage. Every executor calls ``run_task``; they differ
only in the ``BlockSource`` that hands it inputs and in where they put what it returns."""

from __future__ import annotations

import pickle
import threading
import weakref
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import partial
from itertools import chain, islice
from itertools import count as numbering
from operator import add, itemgetter
from typing import Any, Callable, Iterable, Iterator, Protocol

from ..errors import NotHashableKeyError, OkplanError
from ..io.formats import read_blocks
from ..logical.aggregators import Aggregator, _append, _extend, _identity, _new_list, grouping, groups_values
from ..logical.narrow import NotAPairError, not_a_pair, raised_here
from ..logical.nodes import func_name
from ..logical.partitioners import HashPartitioner, Partitioner, RangePartitioner, natural_key, portable_hash
from ..physical.operators import (BroadcastJoinOp, CartesianOp, CoalesceOp, CoGroupOp, CombineOp, HashJoinOp,
                                  LocalAggregate, PhysOp,
                                  Pipe, ReadFiles, ReadMaterialized, ReadRange, ReadSource, ShuffleRead,
                                  UnionOp, ZipOp, user_functions)
from ..physical.stage import Materialize, ShuffleWrite, Stage
from . import external
from .memory import TaskMemory, running
from .spill import RunWriter, SpilledRecords, detach, paused_gc


class BlockSource(Protocol):
    """Where a task's inputs come from (memory for ``local``, Redis for the cluster). A partition or
    bucket is a list, or any sized iterable (``SpilledRecords`` when it continues on disk)."""

    def source(self, source_id: str, index: int) -> list: ...

    def shuffle_buckets(self, shuffle_id: int, reduce_index: int,
                        maps: tuple[int, int] | None = None) -> Iterable[list]:
        """Bucket ``reduce_index`` of every map output (of maps ``[maps[0], maps[1])`` only, when given:
        a skew-split join's task)."""
        ...

    def materialized(self, cache_id: str, index: int) -> list: ...

    # optional: ``hands_over(shuffle_id) -> bool``, True when the buckets ``shuffle_buckets`` returns for
    # that shuffle are the reader's alone (each read once, nothing kept): the reduce side may then grow
    # their value lists in place instead of copying them


def _keeps_buckets(shuffle_id: int) -> bool:
    return False


@dataclass
class TaskResult:
    """What one task produced: buckets (shuffle write), a partition (materialise) or the action's value."""

    value: Any
    records_in: int
    records_out: int
    #: bytes this task wrote to spill files
    spill_bytes: int = 0
    #: a map task's records per reduce partition (what adaptive planning and explain read)
    bucket_records: list[int] | None = None
    #: and their pickled bytes, estimated from a sample of records (``bucket_bytes``)
    bucket_bytes: list[int] | None = None


_FIRST = itemgetter(0)


class _Counter:
    """What a task's operators share: records read, and the memory budget (None: never spill)."""

    __slots__ = ("records_in", "memory")

    def __init__(self, memory: TaskMemory | None = None) -> None:
        self.records_in = 0
        self.memory = memory


def run_task(stage: Stage, partition: int, blocks: BlockSource,
             action: Callable[[Iterator], Any] | None = None, memory: TaskMemory | None = None) -> TaskResult:
    """Run ``stage`` over ``partition``. With ``memory``, structures past its budget spill to its spill
    directory (buckets and partitions of the output may then be ``SpilledRecords``); without, all
    stays in memory.

    An exception from user code propagates with its own type and traceback, plus a note naming the
    stage, the partition, the datasets and (when it can be told) the operator whose function raised.
    """
    if memory is None:
        return _run(stage, partition, blocks, action, _Counter())
    spilled_before = memory.spill_dir.bytes_written
    with running(memory):
        try:
            result = _run(stage, partition, blocks, action, _Counter(memory))
        finally:
            memory.thaw()
    result.spill_bytes = memory.spill_dir.bytes_written - spilled_before
    return result


def _run(stage: Stage, partition: int, blocks: BlockSource, action: Callable[[Iterator], Any] | None,
         counter: _Counter) -> TaskResult:
    memory = counter.memory
    try:
        it = compute(stage.root, partition, blocks, counter)
        out = stage.output
        if isinstance(out, ShuffleWrite):
            buckets = bucketize(it, out.partitioner, out.kind, memory, out.grouped)
            sizes = list(map(_values_in if out.grouped else len, buckets))
            return TaskResult(buckets, counter.records_in, sum(sizes), bucket_records=sizes,
                              bucket_bytes=bucket_bytes(buckets))
        if isinstance(out, Materialize):
            if isinstance(it, list):
                data = it
            else:
                data = list(it) if memory is None else external.spool(it, memory)
            return TaskResult(data, counter.records_in, len(data))
        if action is None:
            raise OkplanError(f"{stage.name} is a result stage but no action was given")
        # records out of a result stage are the records the action consumed: an action that says how to
        # count them from its value (collect: len) costs nothing, others count through C-level zip
        counts = getattr(action, "counts", None)
        if counts is not None:
            value = action(it)
            records_out = counts(value)
        else:
            consumed = numbering()
            value = action(map(_FIRST, zip(it, consumed)))
            records_out = next(consumed)
        if memory is not None and memory.escaping:
            value = detach(value)  # groups streamed from disk must not outlive the spill directory
        return TaskResult(value, counter.records_in, records_out)
    except BaseException as exc:
        if not isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            annotate(exc, stage, partition, action)
        raise


#: records pickled per map task to estimate its buckets' bytes
_BYTES_SAMPLE = 16


def bucket_bytes(buckets: list) -> list[int]:
    """Each bucket's pickled size, estimated from up to ``_BYTES_SAMPLE`` records of the first bucket
    with records in memory (one small pickle per map task: adaptive planning compares partitions' sizes, it
    needs no exact figure); zeros when no record pickles.

    >>> bucket_bytes([[(1, 2)] * 10, []])[1]
    0
    """
    for b in buckets:
        held = b if type(b) is list else getattr(b, "tail", None)  # a spilled bucket's records in memory
        if held:
            sample = held[:_BYTES_SAMPLE]
            try:
                per = len(pickle.dumps(sample, protocol=5)) / len(sample)
            except Exception:  # noqa: BLE001 - a record pickle refuses: the figure is only an estimate
                break
            return [int(len(x) * per) for x in buckets]
    return [0] * len(buckets)


def annotate(exc: BaseException, stage: Stage, partition: int, action: Callable | None) -> None:
    """Add a note that says where in the job ``exc`` was raised (once, however often it is re-raised)."""
    if getattr(exc, "_okplan_noted", False):
        return
    where = task_place(stage.name, partition, stage.labels)
    op = _raising_operator(exc, stage, action)
    if op:
        where += f", in {op}"
    exc.add_note(f"okplan: raised in {where}")
    try:
        exc._okplan_noted = True  # type: ignore[attr-defined]
        exc._okplan_stage = stage.id  # type: ignore[attr-defined]
        exc._okplan_partition = partition  # type: ignore[attr-defined]
    except Exception:
        pass


def task_place(stage_name: str, partition: int, labels: Iterable[str] = ()) -> str:
    """Where a task is, as error messages say it.

    >>> task_place("stage 0", 1, ["raw"])
    "stage 0, partition 1, dataset 'raw'"
    """
    where = f"{stage_name}, partition {partition}"
    labels = list(labels)
    if labels:
        where += f", dataset {', '.join(repr(x) for x in labels)}"
    return where


def _raising_operator(exc: BaseException, stage: Stage, action: Callable | None) -> str | None:
    """The operator whose user function is the innermost okplan-known frame of the traceback."""
    codes: dict[Any, str] = {}
    for name, f in user_functions(stage.root):
        code = getattr(f, "__code__", None)
        if code is not None:
            codes.setdefault(code, name)
    user_action = getattr(action, "user_func", None)
    if user_action is not None and getattr(user_action, "__code__", None) is not None:
        codes.setdefault(user_action.__code__, f"{getattr(action, 'name', 'action')}({func_name(user_action)})")
    found = None
    tb = exc.__traceback__
    while tb is not None:
        name = codes.get(tb.tb_frame.f_code)
        if name is not None:
            found = name
        tb = tb.tb_next
    return found


# -- evaluating the operator tree --------------------------------------------------------------------

def compute(op: PhysOp, i: int, blocks: BlockSource, counter: _Counter) -> Iterator:
    handler = _HANDLERS.get(type(op))
    if handler is None:
        raise OkplanError(f"the task runner cannot evaluate {type(op).__name__}")
    return handler(op, i, blocks, counter)


def _read_source(op: ReadSource, i, blocks, counter):
    data = op.slices[i] if op.slices is not None else blocks.source(op.source_id, i)
    counter.records_in += len(data)
    return iter(data)


def _read_range(op: ReadRange, i, blocks, counter):
    r = op.partition_range(i)
    counter.records_in += len(r)
    return iter(r)


def _read_files(op: ReadFiles, i, blocks, counter):
    # records flow through chain in C; only blocks pass through Python
    return chain.from_iterable(_file_blocks(op, i, counter))


def _file_blocks(op: ReadFiles, i, counter):
    try:
        for block in read_blocks(op.fmt, op.parts[i], op.use_unicode):
            counter.records_in += len(block)
            yield block
    except FileNotFoundError as e:
        e.add_note("okplan: tasks read their own splits, so every input file must be visible at the same path "
                   "wherever tasks run (a shared file system or an object store)")
        raise


def _pipe(op: Pipe, i, blocks, counter):
    it = compute(op.child, i, blocks, counter)
    for fn in op.fns:
        it = fn(i, it)
    return it


def _union(op: UnionOp, i, blocks, counter):
    for part, count in zip(op.parts, op.counts):
        if i < count:
            return compute(part, i, blocks, counter)
        i -= count
    raise IndexError("union partition out of range")


def _coalesce(op: CoalesceOp, i, blocks, counter):
    return chain.from_iterable(compute(op.child, j, blocks, counter) for j in op.groups[i])


def _combine(op: CombineOp, i, blocks, counter):
    return _aggregate(compute(op.child, i, blocks, counter), op.aggregator, False, op.kind, counter.memory)


def _shuffle_read(op: ShuffleRead, i, blocks, counter):
    # buckets one after the other (a cluster decodes each only when it is reached), counted as reached
    size = _values_in if op.combined and groups_values(op.aggregator) else len
    if op.tasks is None:
        buckets = blocks.shuffle_buckets(op.shuffle_id, i)
    else:
        p, lo, hi = op.tasks[i]
        buckets = blocks.shuffle_buckets(op.shuffle_id, p, (lo, hi))
    records = chain.from_iterable(_counted(buckets, counter, size))
    owned = getattr(blocks, "hands_over", _keeps_buckets)(op.shuffle_id)
    return _aggregate(records, op.aggregator, op.combined, op.kind, counter.memory, owned)


def _counted(buckets: Iterable, counter: _Counter, size: Callable[[Any], int] = len) -> Iterator:
    for b in buckets:
        counter.records_in += size(b)
        yield b


_SECOND = itemgetter(1)


def _values_in(bucket: Any) -> int:
    """The values of a bucket of ``(k, [values])`` groups (groupByKey's grouped shuffle), so metrics count
    records as the user wrote them, whatever the grouping; a bucket on disk counts its groups (reading
    it twice would cost more than the figure is worth)."""
    return sum(map(len, map(_SECOND, bucket))) if type(bucket) is list else len(bucket)


def _local_aggregate(op: LocalAggregate, i, blocks, counter):
    return _aggregate(compute(op.child, i, blocks, counter), op.aggregator, op.combined, op.kind,
                      counter.memory)


def _aggregate(it: Iterator, agg: Aggregator | None, combined: bool, kind: str,
               memory: TaskMemory | None = None, owned: bool = False) -> Iterator:
    """``owned``: the combiners read are this task's alone (see ``_fold_combiners``)."""
    if agg is None:
        return it
    if memory is None:
        if combined:
            return iter(merge_combiners(it, agg, kind, owned).items())
        return iter(combine_values(it, agg, kind).items())
    if combined:
        fold = partial(_fold_combiners, agg=agg, kind=kind, owned=owned)
    else:
        fold = partial(_fold_values, agg=agg, kind=kind)
    width = 1 if agg.create_combiner is _new_list and agg.merge_value is _append else 0
    return external.combine([(it, fold)], agg.merge_combiners, memory, width)


def _cogroup(op: CoGroupOp, i, blocks, counter):
    n = len(op.parts)
    memory = counter.memory
    if memory is not None:
        sources = [(compute(part, i, blocks, counter), partial(_fold_cogroup, pos=pos, n=n))
                   for pos, part in enumerate(op.parts)]
        return external.combine(sources, _merge_cogroups, memory, n)
    groups: dict[Any, tuple[list, ...]] = {}
    for pos, part in enumerate(op.parts):
        _fold_cogroup(groups, compute(part, i, blocks, counter), pos, n)
    return iter(groups.items())


def _fold_cogroup(groups: dict, it: Iterable, pos: int, n: int) -> None:
    k = None
    try:
        for k, v in it:
            g = groups.get(k)
            if g is None:
                # a literal pair for the two-sided join: a generator per new key cost more than the join
                g = groups[k] = ([], []) if n == 2 else tuple([] for _ in range(n))
            g[pos].append(v)
    except (TypeError, ValueError) as e:
        _raise_key_error(e, _fold_cogroup, "cogroup/join", k)
        raise


def _merge_cogroups(a: tuple, b: tuple) -> tuple:
    for x, y in zip(a, b):
        x.extend(y)
    return a


def _hash_join(op: HashJoinOp, i, blocks, counter):
    right = compute(op.parts[1], i, blocks, counter)
    memory = counter.memory
    if memory is None:
        table = combine_values(right, _GROUPING, op.how)
        return _probe(compute(op.parts[0], i, blocks, counter), table, op.how)
    table, rest = _build_table(right, op.how, memory)
    if rest is None:
        return _probe(compute(op.parts[0], i, blocks, counter), table, op.how)
    # the right side does not fit: group both sides externally and join key by key
    built = _drain(table)
    sources = [(compute(op.parts[0], i, blocks, counter), partial(_fold_cogroup, pos=0, n=2)),
               (chain(built, rest), partial(_fold_cogroup, pos=1, n=2))]
    return _join_groups(external.combine(sources, _merge_cogroups, memory, 2), op.how)


def _build_table(right: Iterable, how: str, memory: TaskMemory) -> tuple[dict, Iterator | None]:
    """The right side grouped by key, or what was grouped so far and the rest if it is over budget."""
    table: dict = {}
    it = iter(right)
    gauge = memory.gauge()
    items = 0
    while True:
        every = gauge.every
        _fold_values(table, islice(it, every), _GROUPING, how)
        head = next(it, _END)
        if head is _END:
            return table, None
        _fold_values(table, (head,), _GROUPING, how)
        items += every + 1
        if gauge.over(items):
            return table, it


def _drain(table: dict) -> Iterator:
    """``(k, v)`` of a table of value lists, freeing it as it goes."""
    while table:
        k, vs = table.popitem()
        for v in vs:
            yield k, v


def _join_groups(groups: Iterator, how: str) -> Iterator:
    pad_left = how in ("rightOuterJoin", "fullOuterJoin")
    pad_right = how in ("leftOuterJoin", "fullOuterJoin")
    for k, (vs, ws) in groups:
        if not vs:
            if not pad_left:
                continue
            vs = (None,)
        if not ws:
            if not pad_right:
                continue
            ws = (None,)
        for v in vs:
            for w in ws:
                yield k, (v, w)


def _probe(left: Iterator, table: dict, how: str) -> Iterator:
    """Stream the left side past the right side's table; outer joins pad the missing side with None."""
    pad_right = how in ("leftOuterJoin", "fullOuterJoin")
    keep_unmatched_right = how in ("rightOuterJoin", "fullOuterJoin")
    matched: set = set()
    get = table.get
    k = None
    try:
        for k, v in left:
            ws = get(k)
            if ws is not None:
                if keep_unmatched_right:
                    matched.add(k)
                for w in ws:
                    yield k, (v, w)
            elif pad_right:
                yield k, (v, None)
    except (TypeError, ValueError) as e:
        _raise_key_error(e, _probe, how, k)
        raise
    if keep_unmatched_right:
        for k, ws in table.items():
            if k not in matched:
                for w in ws:
                    yield k, (None, w)


#: broadcast tables built in this process, by the operator that reads them: a job's tasks in one process
#: build the table once (as Spark's executors do), and it goes when the job's stages do
_BROADCAST_TABLES: weakref.WeakKeyDictionary[BroadcastJoinOp, dict] = weakref.WeakKeyDictionary()
_broadcast_lock = threading.Lock()


def _broadcast_table(op: BroadcastJoinOp, blocks, counter) -> dict:
    with _broadcast_lock:
        table = _BROADCAST_TABLES.get(op)
    if table is None:
        records = chain.from_iterable(compute(op.build, j, blocks, counter) for j in range(op.build_partitions))
        table = combine_values(records, _GROUPING, op.how)
        with _broadcast_lock:
            _BROADCAST_TABLES[op] = table
    return table


def _broadcast_join(op: BroadcastJoinOp, i, blocks, counter):
    table = _broadcast_table(op, blocks, counter)
    stream = compute(op.stream, i, blocks, counter)
    if not op.build_left:
        return _probe(stream, table, op.how)
    return _probe_left_table(stream, table, op.how)


def _probe_left_table(right: Iterator, table: dict, how: str) -> Iterator:
    """``_probe`` with the sides swapped: the left side's values in ``table``, the right side streamed
    (an inner join or ``rightOuterJoin``, whose unmatched right records are padded on the left)."""
    pad_left = how == "rightOuterJoin"
    get = table.get
    k = None
    try:
        for k, w in right:
            vs = get(k)
            if vs is not None:
                for v in vs:
                    yield k, (v, w)
            elif pad_left:
                yield k, (None, w)
    except (TypeError, ValueError) as e:
        _raise_key_error(e, _probe_left_table, how, k)
        raise


def _read_materialized(op: ReadMaterialized, i, blocks, counter):
    data = blocks.materialized(op.cache_id, i)
    counter.records_in += len(data)
    return iter(data)


def _cartesian(op: CartesianOp, i, blocks, counter):
    li, ri = divmod(i, op.right_count)
    records = compute(op.right, ri, blocks, counter)
    # the right partition is read once per left record: past the budget it is re-read from a spill file
    right = list(records) if counter.memory is None else external.spool(records, counter.memory)
    return ((x, y) for x in compute(op.left, li, blocks, counter) for y in right)


def _zip(op: ZipOp, i, blocks, counter):
    left = compute(op.left, i, blocks, counter)
    right = compute(op.right, i, blocks, counter)
    try:
        yield from zip(left, right, strict=True)
    except ValueError as e:
        if "zip()" not in str(e) or not raised_here(e, _zip):
            raise
        # Spark's words for the same mistake (it fails the task as well)
        raise ValueError("Can only zip RDDs with same number of elements in each partition") from None


_HANDLERS: dict[type, Callable] = {
    ZipOp: _zip,
    HashJoinOp: _hash_join,
    BroadcastJoinOp: _broadcast_join,
    CartesianOp: _cartesian,
    ReadSource: _read_source,
    ReadRange: _read_range,
    ReadFiles: _read_files,
    Pipe: _pipe,
    UnionOp: _union,
    CoalesceOp: _coalesce,
    CombineOp: _combine,
    ShuffleRead: _shuffle_read,
    LocalAggregate: _local_aggregate,
    CoGroupOp: _cogroup,
    ReadMaterialized: _read_materialized,
}


# -- per-key work --------------------------------------------------------------------------------------

#: the right side of a hash join is grouped exactly as groupByKey groups
_GROUPING = grouping()
_END = object()


def combine_values(it: Iterable, agg: Aggregator, kind: str) -> dict:
    """Fold ``(k, v)`` records into ``{k: combiner}``."""
    d: dict = {}
    _fold_values(d, it, agg, kind)
    return d


def _fold_values(d: dict, it: Iterable, agg: Aggregator, kind: str) -> None:
    """Fold ``(k, v)`` records into the combiners of ``d``."""
    create, merge = agg.create_combiner, agg.merge_value
    k = None
    try:
        if create is _new_list and merge is _append:
            # groupByKey: append in place instead of two Python calls per record
            get = d.get
            for k, v in it:
                g = get(k)
                if g is None:
                    d[k] = [v]
                else:
                    g.append(v)
        elif create is _identity and merge is add:
            # reduceByKey(operator.add): add(a, b) is a + b, so the operator goes inline (no call per record)
            for k, v in it:
                if k in d:
                    d[k] = d[k] + v
                else:
                    d[k] = v
        elif create is _identity:
            # reduceByKey: the first value is its own combiner
            for k, v in it:
                if k in d:
                    d[k] = merge(d[k], v)
                else:
                    d[k] = v
        else:
            for k, v in it:
                if k in d:
                    d[k] = merge(d[k], v)
                else:
                    d[k] = create(v)
    except (TypeError, ValueError) as e:
        _raise_key_error(e, _fold_values, kind, k)
        raise


def merge_combiners(it: Iterable, agg: Aggregator, kind: str, owned: bool = False) -> dict:
    """Fold ``(k, combiner)`` records into ``{k: combiner}``."""
    d: dict = {}
    _fold_combiners(d, it, agg, kind, owned)
    return d


def _fold_combiners(d: dict, it: Iterable, agg: Aggregator, kind: str, owned: bool = False) -> None:
    """Fold ``(k, combiner)`` records into the combiners of ``d``. ``owned``: nobody else reads the
    records' combiners (a map output read once), so a key's first list of values may become its group."""
    merge = agg.merge_combiners
    k = None
    try:
        if merge is _extend:
            # groups (groupByKey's grouped shuffle): concatenate in place, no Python call per key. A map
            # output that may be read again (a shuffle two stages read, a kept one) has its first list
            # copied; one read once gives it away: the copy touched every value, cold in memory by then
            get = d.get
            if owned:
                # ...and a list merged into another is emptied at once, while its values are still in
                # the cache: else freeing the job's buckets would visit every such value a second time
                for k, c in it:
                    g = get(k)
                    if g is None:
                        d[k] = c
                    else:
                        g.extend(c)
                        c.clear()
                return
            for k, c in it:
                g = get(k)
                if g is None:
                    d[k] = c[:]
                else:
                    g.extend(c)
            return
        if merge is add:
            for k, c in it:
                if k in d:
                    d[k] = d[k] + c
                else:
                    d[k] = c
            return
        for k, c in it:
            if k in d:
                d[k] = merge(d[k], c)
            else:
                d[k] = c
    except (TypeError, ValueError) as e:
        _raise_key_error(e, _fold_combiners, kind, k)
        raise


def bucketize(it: Iterable, partitioner: Partitioner, kind: str,
              memory: TaskMemory | None = None, grouped: bool = False) -> list[list]:
    """Split ``(k, v)`` records into one list per reduce partition, keeping their order. With
    ``memory``, buckets over its budget move to a spill file; such buckets become ``SpilledRecords``.

    ``grouped``: values are first grouped per key in one dict (``groupByKey``'s map side), and the
    groups go to the buckets as ``(k, [values])``: one dict pass per record, as plain Python would do,
    and a hash and a bucket append per key instead of per record. Past the budget the groups so far go
    to the buckets (a key may then have several groups, in order; the reduce side concatenates them).

    >>> bucketize([("a", 1), ("b", 2), ("a", 3)], HashPartitioner(1), "groupByKey", grouped=True)
    [[('a', [1, 3]), ('b', [2])]]
    """
    n = partitioner.num_partitions
    buckets: list[list] = [[] for _ in range(n)]
    groups: dict | None = {} if grouped else None
    if memory is None:
        if groups is None:
            _fill_buckets(buckets, it, partitioner, kind)
        else:
            _fold_values(groups, it, _GROUPING, kind)
            _fill_buckets(buckets, groups.items(), partitioner, kind)
        return buckets
    gauge = memory.gauge()
    source = iter(it)
    runs: list[list] = [[] for _ in range(n)]
    writer: RunWriter | None = None
    items = 0
    while True:
        every = gauge.every
        if groups is None:
            _fill_buckets(buckets, islice(source, every), partitioner, kind)
        else:
            _fold_values(groups, islice(source, every), _GROUPING, kind)
        head = next(source, _END)  # does the input go on? (a list per slice cost 10%)
        if head is _END:
            break
        if groups is None:
            _fill_buckets(buckets, (head,), partitioner, kind)
        else:
            _fold_values(groups, (head,), _GROUPING, kind)
        items += every + 1
        if gauge.over(items):
            if writer is None:
                writer = RunWriter(memory.spill_dir, "buckets")
            with paused_gc():  # a bounded loop making a tuple per group and no garbage
                if groups is not None:
                    _fill_buckets(buckets, _cut_groups(groups, memory.every), partitioner, kind)
                    groups = {}
                external.spill_buckets(buckets, writer, runs)
            memory.spills += 1
            items = 0
            gauge.spilled()
    if groups:
        with paused_gc():
            _fill_buckets(buckets, _cut_groups(groups, memory.every), partitioner, kind)
    if writer is None:
        return buckets
    writer.close()
    return [SpilledRecords(rs, b) if rs else b for rs, b in zip(runs, buckets)]  # type: ignore[misc]


def _cut_groups(groups: dict, size: int) -> Iterable[tuple]:
    """``groups.items()``, a group longer than ``size`` cut into pieces of ``size`` values (in order).
    The reduce side checks its budget every so many records: a record carrying a whole hot key's
    values would grow past the budget between two checks."""
    if max(map(len, groups.values()), default=0) <= size:
        return groups.items()
    return ((k, vs[i:i + size]) for k, vs in groups.items() for i in range(0, len(vs), size))


def _fill_buckets(buckets: list[list], it: Iterable, partitioner: Partitioner, kind: str) -> None:
    n = len(buckets)
    appends = [b.append for b in buckets]
    k = None
    try:
        # A record that already is a (k, v) tuple is kept as it is: building a new tuple per record
        # cost more than the hashing. Other pairs (lists) still become tuples; non-pairs still fail to unpack.
        if n == 1:
            add = appends[0]
            for rec in it:
                k, v = rec
                add(rec if type(rec) is tuple else (k, v))
        elif isinstance(partitioner, HashPartitioner) and partitioner.partition_func is portable_hash:
            for rec in it:
                k, v = rec
                # portable_hash(int) is hash(int); calling the builtin directly skips a Python call
                appends[(hash(k) if type(k) is int else portable_hash(k)) % n](rec if type(rec) is tuple else (k, v))
        elif type(partitioner) is RangePartitioner and partitioner.bounds is not None:
            # sortByKey: the bisect inline, and no call of the default (identity) key function
            bounds = partitioner.bounds
            keyfunc = None if partitioner.keyfunc in (None, natural_key) else partitioner.keyfunc
            last = n - 1
            if partitioner.ascending:
                for rec in it:
                    k, v = rec
                    p = bisect_left(bounds, k if keyfunc is None else keyfunc(k))
                    appends[p if p < last else last](rec if type(rec) is tuple else (k, v))
            else:
                top = len(bounds)
                for rec in it:
                    k, v = rec
                    p = top - bisect_right(bounds, k if keyfunc is None else keyfunc(k))
                    appends[p if p < last else last](rec if type(rec) is tuple else (k, v))
        else:
            part = partitioner.partition
            for rec in it:
                k, v = rec
                appends[part(k)](rec if type(rec) is tuple else (k, v))
    except (TypeError, ValueError) as e:
        _raise_key_error(e, _fill_buckets, kind, k)
        raise


def _raise_key_error(e: BaseException, fn: Callable, kind: str, key: Any) -> None:
    """Turn a failed unpack or hash *in okplan's own loop* into a message that says what to do."""
    if not raised_here(e, fn) and not _raised_in_hash(e):
        return
    text = str(e)
    if "unhashable" in text:
        raise NotHashableKeyError(
            f"{kind} needs hashable keys, but a key is of type {type(key).__name__} ({text}); "
            f"convert keys first, e.g. lists to tuples"
        ) from None
    if "unpack" in text or "not iterable" in text:
        raise not_a_pair(kind, e) from None


def _raised_in_hash(e: BaseException) -> bool:
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code is portable_hash.__code__


__all__ = ["run_task", "BlockSource", "TaskResult", "NotHashableKeyError", "NotAPairError",
           "combine_values", "merge_combiners", "bucketize", "compute"]
