"""Transformations that move records between partitions (by key, sorting, set operations, joins).
Mixed into ``DataSet``."""

from __future__ import annotations

import copy
import random
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Callable

from . import _checks as chk
from .logical import narrow
from .logical import nodes as L
from .logical.aggregators import Aggregator, grouping, keep_first, reducing
from .logical.nodes import func_name
from .logical.partitioners import HashPartitioner, RangePartitioner, natural_key, portable_hash
from .logical.shortcuts import known_count
from .exec.external_sort import external_sorted
from .logical.traits import is_okplan_function

if TYPE_CHECKING:
    from .dataset import DataSet


class WideMixin:
    _node: L.Node

    # -- helpers ---------------------------------------------------------------------------------------
    def _reduce_partitions(self, numPartitions: int | None, method: str) -> int:
        chk.check_partitions(numPartitions, method)
        if numPartitions is None:
            return max(1, self.getNumPartitions())  # type: ignore[attr-defined]
        return numPartitions

    def _shuffle(self, kind: str, partitioner, aggregator: Aggregator | None = None) -> "DataSet":
        node = L.Shuffle(inputs=(self._node,), kind=kind, partitioner_=partitioner, aggregator=aggregator,
                         callsite=chk.user_callsite())
        return self._derive(node)  # type: ignore[attr-defined]

    # -- by key ----------------------------------------------------------------------------------------
    def partitionBy(self, numPartitions: int, partitionFunc: Callable[[Any], int] = portable_hash) -> "DataSet":
        """Records ``(k, v)`` moved to partition ``partitionFunc(k) % numPartitions``.

        >>> ctx.parallelize([(1, "a"), (2, "b")]).partitionBy(2).glom().collect()
        [[(2, 'b')], [(1, 'a')]]
        """
        chk.check_partitions(numPartitions, "partitionBy", allow_none=False)
        chk.check_callable(partitionFunc, "partitionBy", "partitionFunc")
        return self._shuffle("partitionBy", HashPartitioner(numPartitions, partitionFunc))

    def combineByKey(self, createCombiner: Callable, mergeValue: Callable, mergeCombiners: Callable,
                     numPartitions: int | None = None,
                     partitionFunc: Callable[[Any], int] = portable_hash) -> "DataSet":
        """The general per-key aggregation all the others are built on.

        >>> ctx.parallelize([("a", 1), ("a", 2)]).combineByKey(lambda v: [v], lambda c, v: c + [v],
        ...     lambda a, b: a + b).collect()
        [('a', [1, 2])]
        """
        for f, arg in ((createCombiner, "createCombiner"), (mergeValue, "mergeValue"),
                       (mergeCombiners, "mergeCombiners")):
            chk.check_callable(f, "combineByKey", arg)
        n = self._reduce_partitions(numPartitions, "combineByKey")
        agg = Aggregator(createCombiner, mergeValue, mergeCombiners, f"combine({func_name(mergeValue)})",
                         True, (createCombiner, mergeValue, mergeCombiners))
        return self._shuffle("combineByKey", HashPartitioner(n, partitionFunc), agg)

    def reduceByKey(self, func: Callable[[Any, Any], Any], numPartitions: int | None = None,
                    partitionFunc: Callable[[Any], int] = portable_hash) -> "DataSet":
        """Merge the values of each key with an associative ``func``.

        >>> ctx.parallelize([("a", 1), ("b", 1), ("a", 1)]).reduceByKey(add).collect()
        [('a', 2), ('b', 1)]
        """
        chk.check_callable(func, "reduceByKey", "func")
        n = self._reduce_partitions(numPartitions, "reduceByKey")
        return self._shuffle("reduceByKey", HashPartitioner(n, partitionFunc), reducing(func, func_name(func)))

    def foldByKey(self, zeroValue: Any, func: Callable[[Any, Any], Any], numPartitions: int | None = None,
                  partitionFunc: Callable[[Any], int] = portable_hash) -> "DataSet":
        """Like ``reduceByKey`` but every key's fold starts from (a copy of) ``zeroValue``.

        >>> ctx.parallelize([("a", 1), ("a", 2)]).foldByKey(0, add).collect()
        [('a', 3)]
        """
        chk.check_callable(func, "foldByKey", "func")
        n = self._reduce_partitions(numPartitions, "foldByKey")

        def create(v):
            return func(copy.deepcopy(zeroValue), v)

        agg = Aggregator(create, func, func, f"fold({func_name(func)})", True, (func,))
        return self._shuffle("foldByKey", HashPartitioner(n, partitionFunc), agg)

    def aggregateByKey(self, zeroValue: Any, seqFunc: Callable, combFunc: Callable,
                       numPartitions: int | None = None,
                       partitionFunc: Callable[[Any], int] = portable_hash) -> "DataSet":
        """Per key: fold values into (a copy of) ``zeroValue`` with ``seqFunc``, merge with ``combFunc``.

        >>> ctx.parallelize([("a", 1), ("a", 2)]).aggregateByKey(0, add, add).collect()
        [('a', 3)]
        """
        chk.check_callable(seqFunc, "aggregateByKey", "seqFunc")
        chk.check_callable(combFunc, "aggregateByKey", "combFunc")
        n = self._reduce_partitions(numPartitions, "aggregateByKey")

        def create(v):
            return seqFunc(copy.deepcopy(zeroValue), v)

        agg = Aggregator(create, seqFunc, combFunc, f"aggregate({func_name(seqFunc)}, {func_name(combFunc)})",
                         True, (seqFunc, combFunc))
        return self._shuffle("aggregateByKey", HashPartitioner(n, partitionFunc), agg)

    def groupByKey(self, numPartitions: int | None = None,
                   partitionFunc: Callable[[Any], int] = portable_hash) -> "DataSet":
        """``(k, [values])`` per key (values as a list). Never combined on the map side.

        >>> ctx.parallelize([("a", 1), ("a", 2)]).groupByKey().collect()
        [('a', [1, 2])]
        """
        n = self._reduce_partitions(numPartitions, "groupByKey")
        return self._shuffle("groupByKey", HashPartitioner(n, partitionFunc), grouping())

    def groupBy(self, f: Callable[[Any], Any], numPartitions: int | None = None,
                partitionFunc: Callable[[Any], int] = portable_hash) -> "DataSet":
        """``(f(x), [records])`` for each distinct ``f(x)``.

        >>> ctx.parallelize([1, 2, 3]).groupBy(lambda x: x % 2).collect()
        [(0, [2]), (1, [1, 3])]
        """
        chk.check_callable(f, "groupBy")
        return self.keyBy(f).groupByKey(numPartitions, partitionFunc)  # type: ignore[attr-defined]

    def distinct(self, numPartitions: int | None = None) -> "DataSet":
        """The records without duplicates (records must be hashable).

        >>> sorted(ctx.parallelize([1, 1, 2]).distinct().collect())
        [1, 2]
        """
        n = self._reduce_partitions(numPartitions, "distinct")
        pairs = self._narrow("pairWithNone", None, narrow.map_fn(narrow_pair_with_none))  # type: ignore
        return pairs._shuffle("distinct", HashPartitioner(n), keep_first("distinct")).keys()

    # -- sorting ---------------------------------------------------------------------------------------
    def sortByKey(self, ascending: bool = True, numPartitions: int | None = None,
                  keyfunc: Callable[[Any], Any] = natural_key) -> "DataSet":
        """``(k, v)`` pairs sorted by key across all partitions. Nothing runs now: when a job needs the
        sort, its input is computed once and kept while a sample of its keys sets the range bounds
        (PySpark runs a count and a sample job when sortByKey is called).

        >>> ctx.parallelize([(2, "b"), (1, "a")]).sortByKey().collect()
        [(1, 'a'), (2, 'b')]
        """
        chk.check_partitions(numPartitions, "sortByKey")
        chk.check_callable(keyfunc, "sortByKey", "keyfunc")
        n = numPartitions if numPartitions is not None else max(1, self.getNumPartitions())  # type: ignore
        sort_key = _pair_sort_key(keyfunc)
        bounds: list | None = []
        if n > 1:
            if known_count(self._node) == 0:
                return self  # type: ignore[return-value]  # as PySpark: nothing to sort, partitions kept
            bounds = None  # sampled when a job runs (okplan.sort_bounds)
        partitioner = RangePartitioner(bounds, bool(ascending), keyfunc, n)
        shuffled = self._shuffle("sortByKey", partitioner)
        reverse = not ascending

        fast = keyfunc is natural_key
        if fast:  # the key itself: sorted by a C itemgetter, not two Python calls per record
            sort_key = _first

        def sort_partition(it):
            # merges sorted runs from disk when the partition is over the task's memory budget
            try:
                return external_sorted(it, key=sort_key, reverse=reverse)
            except (TypeError, IndexError) as e:
                # the itemgetter's own failure (raised in the sort, not in a user function upstream)
                # says what the checked key says
                if fast and narrow.raised_here(e, external_sorted) and (
                        isinstance(e, IndexError) or "subscriptable" in str(e)):
                    raise narrow.not_a_pair("sortByKey", e) from None
                raise

        # a user's keyfunc is called here too: as the node's function, error notes name it and no filter
        # moves below the sort past its calls
        func = None if is_okplan_function(keyfunc) else keyfunc
        return shuffled._narrow("sortPartition", func, narrow.map_partitions_fn(sort_partition), True,
                                ("asc" if ascending else "desc",))

    def sortBy(self, keyfunc: Callable[[Any], Any], ascending: bool = True,
               numPartitions: int | None = None) -> "DataSet":
        """Records sorted by ``keyfunc(x)`` across all partitions.

        >>> ctx.parallelize([3, 1, 2]).sortBy(lambda x: x).collect()
        [1, 2, 3]
        """
        chk.check_callable(keyfunc, "sortBy", "keyfunc")
        return self.keyBy(keyfunc).sortByKey(ascending, numPartitions).values()  # type: ignore[attr-defined]

    def repartitionAndSortWithinPartitions(self, numPartitions: int | None = None,
                                           partitionFunc: Callable[[Any], int] = portable_hash,
                                           ascending: bool = True,
                                           keyfunc: Callable[[Any], Any] = lambda x: x) -> "DataSet":
        """``partitionBy(numPartitions, partitionFunc)``, then each partition sorted by ``keyfunc(key)``
        (one shuffle; no global order).

        >>> ctx.parallelize([(0, 5), (3, 8), (2, 6), (0, 8), (3, 8), (1, 3)]).repartitionAndSortWithinPartitions(
        ...     2, lambda x: x % 2).glom().collect()
        [[(0, 5), (0, 8), (2, 6)], [(1, 3), (3, 8), (3, 8)]]
        """
        method = "repartitionAndSortWithinPartitions"
        chk.check_callable(partitionFunc, method, "partitionFunc")
        chk.check_callable(keyfunc, method, "keyfunc")
        n = self._reduce_partitions(numPartitions, method)
        shuffled = self._shuffle(method, HashPartitioner(n, partitionFunc))
        sort_key = _pair_sort_key(keyfunc)
        reverse = not ascending

        def sort_partition(it):
            return external_sorted(it, key=sort_key, reverse=reverse)

        # keyfunc as the node's function: two sorts by different keys are never taken for one
        return shuffled._narrow("sortPartition", keyfunc, narrow.map_partitions_fn(sort_partition), True,
                                ("asc" if ascending else "desc",))

    # -- repartitioning --------------------------------------------------------------------------------
    def repartition(self, numPartitions: int) -> "DataSet":
        """Exactly ``numPartitions`` partitions of about equal size, by a shuffle.

        >>> ctx.parallelize(range(10), 1).repartition(3).getNumPartitions()
        3
        """
        chk.check_partitions(numPartitions, "repartition", allow_none=False)

        def spread(i, it):
            # round robin from a per-partition start, so small partitions don't all hit reducer 0
            start = random.Random(i).randrange(numPartitions)
            return ((start + j, x) for j, x in enumerate(it))

        keyed = self._narrow("spread", None, spread)  # type: ignore[attr-defined]
        return keyed._shuffle("repartition", HashPartitioner(numPartitions, _int_key)).values()

    # -- joins -----------------------------------------------------------------------------------------
    def _join_partitioner(self, others: list, numPartitions: int | None, method: str) -> HashPartitioner:
        """Spark's ``defaultPartitioner``: an explicit count, else the largest hash partitioner an input
        already has (so co-partitioned inputs need no shuffle), else the sum of the inputs' partitions
        (PySpark's default for joins)."""
        chk.check_partitions(numPartitions, method)
        if numPartitions is not None:
            return HashPartitioner(numPartitions)
        inputs = [self, *others]
        existing = [d.partitioner for d in inputs if isinstance(d.partitioner, HashPartitioner)]
        if existing:
            return max(existing, key=lambda p: p.num_partitions)
        return HashPartitioner(max(1, sum(d.getNumPartitions() for d in inputs)))

    def cogroup(self, other: "DataSet", numPartitions: int | None = None) -> "DataSet":
        """``(k, (values in self, values in other))`` for every key of either (values as lists).

        >>> sorted(ctx.parallelize([("a", 1)]).cogroup(ctx.parallelize([("a", 2), ("b", 3)])).collect())
        [('a', ([1], [2])), ('b', ([], [3]))]
        """
        from .dataset import DataSet

        chk.check_dataset(other, "cogroup", DataSet, self.context)  # type: ignore[attr-defined]
        return self._cogroup(other, numPartitions, "cogroup")

    def _cogroup(self, other: "DataSet", numPartitions: int | None, method: str,
                 presence_only: frozenset = frozenset()) -> "DataSet":
        partitioner = self._join_partitioner([other], numPartitions, method)
        node = L.CoGroup(inputs=(self._node, other._node), partitioner_=partitioner, presence_only=presence_only,
                         callsite=chk.user_callsite())
        return self._derive(node)  # type: ignore[attr-defined]

    def groupWith(self, other: "DataSet", *others: "DataSet") -> "DataSet":
        """``cogroup`` of any number of datasets: ``(k, (values in self, in other, in each of others))``.

        >>> a, b, c = ctx.parallelize([("a", 5)]), ctx.parallelize([("a", 1)]), ctx.parallelize([("b", 2)])
        >>> sorted(a.groupWith(b, c).collect())
        [('a', ([5], [1], [])), ('b', ([], [], [2]))]
        """
        from .dataset import DataSet

        rest = (other, *others)
        for d in rest:
            chk.check_dataset(d, "groupWith", DataSet, self.context)  # type: ignore[attr-defined]
        partitioner = self._join_partitioner(list(rest), None, "groupWith")
        node = L.CoGroup(inputs=(self._node, *(d._node for d in rest)), partitioner_=partitioner,
                         callsite=chk.user_callsite())
        return self._derive(node)  # type: ignore[attr-defined]

    def _joined(self, other: "DataSet", numPartitions: int | None, method: str, pad_left: bool,
                pad_right: bool) -> "DataSet":
        from .dataset import DataSet

        chk.check_dataset(other, method, DataSet, self.context)  # type: ignore[attr-defined]
        grouped = self._cogroup(other, numPartitions, method)
        return grouped._narrow(method, None, narrow.flat_map_values_fn(_dispatch(pad_left, pad_right)), True)

    def join(self, other: "DataSet", numPartitions: int | None = None) -> "DataSet":
        """Inner join: ``(k, (v, w))`` for every pair of values with the same key.

        >>> ctx.parallelize([("a", 1)]).join(ctx.parallelize([("a", 2), ("a", 3)])).collect()
        [('a', (1, 2)), ('a', (1, 3))]
        """
        return self._joined(other, numPartitions, "join", False, False)

    def leftOuterJoin(self, other: "DataSet", numPartitions: int | None = None) -> "DataSet":
        """``(k, (v, w))``, with ``w`` None for keys missing from ``other``.

        >>> sorted(ctx.parallelize([("a", 1), ("b", 2)]).leftOuterJoin(ctx.parallelize([("a", 3)])).collect())
        [('a', (1, 3)), ('b', (2, None))]
        """
        return self._joined(other, numPartitions, "leftOuterJoin", False, True)

    def rightOuterJoin(self, other: "DataSet", numPartitions: int | None = None) -> "DataSet":
        """``(k, (v, w))``, with ``v`` None for keys missing from ``self``."""
        return self._joined(other, numPartitions, "rightOuterJoin", True, False)

    def fullOuterJoin(self, other: "DataSet", numPartitions: int | None = None) -> "DataSet":
        """``(k, (v, w))`` for keys of either side, None for the missing side.

        >>> sorted(ctx.parallelize([("a", 1)]).fullOuterJoin(ctx.parallelize([("b", 2)])).collect())
        [('a', (1, None)), ('b', (None, 2))]
        """
        return self._joined(other, numPartitions, "fullOuterJoin", True, True)

    def subtractByKey(self, other: "DataSet", numPartitions: int | None = None) -> "DataSet":
        """The pairs of ``self`` whose key is not in ``other``.

        >>> ctx.parallelize([("a", 1), ("b", 2)]).subtractByKey(ctx.parallelize([("a", 0)])).collect()
        [('b', 2)]
        """
        from .dataset import DataSet

        chk.check_dataset(other, "subtractByKey", DataSet, self.context)  # type: ignore[attr-defined]
        # only whether a key occurs in ``other`` matters
        grouped = self._cogroup(other, numPartitions, "subtractByKey", frozenset({1}))
        return grouped._narrow("subtractByKey", None, narrow.flat_map_values_fn(_left_if_no_right), True)

    def subtract(self, other: "DataSet", numPartitions: int | None = None) -> "DataSet":
        """The records of ``self`` not in ``other`` (duplicates in ``self`` kept).

        >>> ctx.parallelize([1, 2, 2, 3]).subtract(ctx.parallelize([3])).collect()
        [1, 2, 2]
        """
        from .dataset import DataSet

        chk.check_dataset(other, "subtract", DataSet, self.context)  # type: ignore[attr-defined]
        mine = self._narrow("pairWithTrue", None, narrow.map_fn(narrow_pair_with_true))  # type: ignore
        theirs = other._narrow("pairWithTrue", None, narrow.map_fn(narrow_pair_with_true))
        return mine.subtractByKey(theirs, numPartitions).keys()

    def intersection(self, other: "DataSet") -> "DataSet":
        """The distinct records present in both.

        >>> sorted(ctx.parallelize([1, 2, 2, 3]).intersection(ctx.parallelize([2, 3, 4])).collect())
        [2, 3]
        """
        from .dataset import DataSet

        chk.check_dataset(other, "intersection", DataSet, self.context)  # type: ignore[attr-defined]
        mine = self._narrow("pairWithNone", None, narrow.map_fn(narrow_pair_with_none))  # type: ignore
        theirs = other._narrow("pairWithNone", None, narrow.map_fn(narrow_pair_with_none))
        # only whether a key occurs on each side matters
        grouped = mine._cogroup(theirs, None, "intersection", frozenset({0, 1}))
        return grouped.filter(_in_both).keys()

    def cartesian(self, other: "DataSet") -> "DataSet":
        """Every pair ``(x, y)`` of a record of ``self`` and one of ``other``.

        >>> ctx.parallelize([1, 2]).cartesian(ctx.parallelize(["a"])).collect()
        [(1, 'a'), (2, 'a')]
        """
        from .dataset import DataSet

        chk.check_dataset(other, "cartesian", DataSet, self.context)  # type: ignore[attr-defined]
        node = L.Cartesian(inputs=(self._node, other._node), callsite=chk.user_callsite())
        return self._derive(node)  # type: ignore[attr-defined]


def narrow_pair_with_none(x):
    return (x, None)


def narrow_pair_with_true(x):
    return (x, True)


def _int_key(k: int) -> int:
    return k


def _in_both(kv):
    left, right = kv[1]
    return bool(left) and bool(right)


def _left_if_no_right(groups):
    left, right = groups
    return left if not right else ()


_first = itemgetter(0)


def _pair_sort_key(keyfunc: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``keyfunc(key)`` of a ``(key, value)`` record; a record that is not a pair is reported as such."""

    def sort_key(kv):
        try:
            k = kv[0]
        except (TypeError, IndexError) as e:
            raise narrow.not_a_pair("sortByKey", e) from None
        return keyfunc(k)

    return sort_key


def _dispatch(pad_left: bool, pad_right: bool) -> Callable:
    def dispatch(groups):
        vs, ws = groups
        if pad_left and not vs:
            vs = [None]
        if pad_right and not ws:
            ws = [None]
        # lazily: the values of a hot key may be streamed from disk, and their product is bigger still
        return ((v, w) for v in vs for w in ws)
    return dispatch
