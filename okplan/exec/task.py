"""The task runner: computes one partition of one stage. Every executor calls ``run_task``; they differ
only in the ``BlockSource`` that hands it inputs and in where they put what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from itertools import count as numbering
from operator import itemgetter
from typing import Any, Callable, Iterable, Iterator, Protocol

from ..errors import NotHashableKeyError, OkplanError
from ..io.formats import read_blocks
from ..logical.aggregators import Aggregator, _append, _identity, _new_list, grouping
from ..logical.narrow import NotAPairError, not_a_pair, raised_here
from ..logical.nodes import func_name
from ..logical.partitioners import HashPartitioner, Partitioner, portable_hash
from ..physical.operators import (CartesianOp, CoalesceOp, CoGroupOp, CombineOp, HashJoinOp, LocalAggregate, PhysOp,
                                  Pipe, ReadFiles, ReadMaterialized, ReadRange, ReadSource, ShuffleRead,
                                  UnionOp, ZipOp, user_functions)
from ..physical.stage import Materialize, ShuffleWrite, Stage


class BlockSource(Protocol):
    """Where a task's inputs come from (memory for ``local``, Redis for the cluster)."""

    def source(self, source_id: str, index: int) -> list: ...

    def shuffle_buckets(self, shuffle_id: int, reduce_index: int) -> Iterable[list]: ...

    def materialized(self, cache_id: str, index: int) -> list: ...


@dataclass
class TaskResult:
    """What one task produced: buckets (shuffle write), a partition (materialise) or the action's value."""

    value: Any
    records_in: int
    records_out: int


_FIRST = itemgetter(0)


class _Counter:
    __slots__ = ("records_in",)

    def __init__(self) -> None:
        self.records_in = 0


def run_task(stage: Stage, partition: int, blocks: BlockSource,
             action: Callable[[Iterator], Any] | None = None) -> TaskResult:
    """Run ``stage`` over ``partition``.

    An exception from user code propagates with its own type and traceback, plus a note naming the
    stage, the partition, the datasets and (when it can be told) the operator whose function raised.
    """
    counter = _Counter()
    try:
        it = compute(stage.root, partition, blocks, counter)
        out = stage.output
        if isinstance(out, ShuffleWrite):
            buckets = bucketize(it, out.partitioner, out.kind)
            return TaskResult(buckets, counter.records_in, sum(map(len, buckets)))
        if isinstance(out, Materialize):
            data = it if isinstance(it, list) else list(it)
            return TaskResult(data, counter.records_in, len(data))
        if action is None:
            raise OkplanError(f"{stage.name} is a result stage but no action was given")
        # records out of a result stage are the records the action consumed: an action that says how to
        # count them from its value (collect: len) costs nothing, others count through C-level zip
        counts = getattr(action, "counts", None)
        if counts is not None:
            value = action(it)
            return TaskResult(value, counter.records_in, counts(value))
        consumed = numbering()
        value = action(map(_FIRST, zip(it, consumed)))
        return TaskResult(value, counter.records_in, next(consumed))
    except BaseException as exc:
        if not isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            annotate(exc, stage, partition, action)
        raise


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
    return iter(combine_values(compute(op.child, i, blocks, counter), op.aggregator, op.kind).items())


def _shuffle_read(op: ShuffleRead, i, blocks, counter):
    buckets = blocks.shuffle_buckets(op.shuffle_id, i)
    if not isinstance(buckets, list):
        buckets = list(buckets)
    counter.records_in += sum(map(len, buckets))
    return _aggregate(chain.from_iterable(buckets), op.aggregator, op.combined, op.kind)


def _local_aggregate(op: LocalAggregate, i, blocks, counter):
    return _aggregate(compute(op.child, i, blocks, counter), op.aggregator, op.combined, op.kind)


def _aggregate(it: Iterator, agg: Aggregator | None, combined: bool, kind: str) -> Iterator:
    if agg is None:
        return it
    if combined:
        return iter(merge_combiners(it, agg, kind).items())
    return iter(combine_values(it, agg, kind).items())


def _cogroup(op: CoGroupOp, i, blocks, counter):
    n = len(op.parts)
    groups: dict[Any, tuple[list, ...]] = {}
    k = None
    for pos, part in enumerate(op.parts):
        it = compute(part, i, blocks, counter)
        try:
            for k, v in it:
                g = groups.get(k)
                if g is None:
                    # a literal pair for the two-sided join: a generator per new key cost more than the join
                    g = groups[k] = ([], []) if n == 2 else tuple([] for _ in range(n))
                g[pos].append(v)
        except (TypeError, ValueError) as e:
            _raise_key_error(e, _cogroup, "cogroup/join", k)
            raise
    return iter(groups.items())


def _hash_join(op: HashJoinOp, i, blocks, counter):
    table = combine_values(compute(op.parts[1], i, blocks, counter), _GROUPING, op.how)
    return _probe(compute(op.parts[0], i, blocks, counter), table, op.how)


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


def _read_materialized(op: ReadMaterialized, i, blocks, counter):
    data = blocks.materialized(op.cache_id, i)
    counter.records_in += len(data)
    return iter(data)


def _cartesian(op: CartesianOp, i, blocks, counter):
    li, ri = divmod(i, op.right_count)
    right = list(compute(op.right, ri, blocks, counter))
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


def combine_values(it: Iterable, agg: Aggregator, kind: str) -> dict:
    """Fold ``(k, v)`` records into ``{k: combiner}``."""
    d: dict = {}
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
        _raise_key_error(e, combine_values, kind, k)
        raise
    return d


def merge_combiners(it: Iterable, agg: Aggregator, kind: str) -> dict:
    """Fold ``(k, combiner)`` records into ``{k: combiner}``."""
    d: dict = {}
    merge = agg.merge_combiners
    k = None
    try:
        for k, c in it:
            if k in d:
                d[k] = merge(d[k], c)
            else:
                d[k] = c
    except (TypeError, ValueError) as e:
        _raise_key_error(e, merge_combiners, kind, k)
        raise
    return d


def bucketize(it: Iterable, partitioner: Partitioner, kind: str) -> list[list]:
    """Split ``(k, v)`` records into one list per reduce partition, keeping their order."""
    n = partitioner.num_partitions
    buckets: list[list] = [[] for _ in range(n)]
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
        else:
            part = partitioner.partition
            for rec in it:
                k, v = rec
                appends[part(k)](rec if type(rec) is tuple else (k, v))
    except (TypeError, ValueError) as e:
        _raise_key_error(e, bucketize, kind, k)
        raise
    return buckets


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
