"""Actions: the calls that run a job and return plain values. Mixed into ``DataSet``.

Each action is a per-partition function (runs in the task, on any executor) plus a merge of the
partition results here in the caller, the way PySpark builds its actions on ``runJob``.
"""

from __future__ import annotations

import copy
import functools
import heapq
import operator
from bisect import bisect_right
from collections import defaultdict
from itertools import islice
import math
from math import isinf, isnan
from typing import Any, Callable, Iterable, Iterator

from . import _checks as chk
from .exec.task import NotHashableKeyError
from .logical import nodes as L
from .logical.narrow import not_a_pair, raised_here
from .logical.shortcuts import count_without_running
from .statcounter import StatCounter

class PartitionAction:
    """A per-partition action function, named for plans and error notes. ``answer``, when given, may
    answer the whole job from the plan alone (the plan's root in, the job's one value or None out): the
    session then runs no task (``count()`` of a chain that calls no user function). ``counts``, when
    given, tells from a partition's value how many records the action consumed (``collect``: ``len``),
    so the task runner need not count them one by one for the metrics. ``order_free``: the job's answer
    depends neither on how records are partitioned nor on their order (``count``, ``sum``, ``fold(0, add)``),
    so adaptive planning may change the partitioning of what feeds it (``okplan/adaptive.py``).
    ``concatenates``: the answer is the partitions' records one partition after the other (``collect``),
    so where partitions begin and end cannot show."""

    __slots__ = ("fn", "name", "user_func", "answer", "counts", "order_free", "concatenates")

    def __init__(self, fn: Callable[[Iterator], Any], name: str, user_func: Callable | None = None,
                 answer: Callable[[L.Node], Any] | None = None, counts: Callable[[Any], int] | None = None,
                 order_free: bool = False, concatenates: bool = False):
        self.fn = fn
        self.name = name
        self.user_func = user_func
        self.answer = answer
        self.counts = counts
        self.order_free = order_free
        self.concatenates = concatenates or order_free

    def __call__(self, it: Iterator) -> Any:
        return self.fn(it)


def _neutral_fold(zero: Any, op: Callable) -> bool:
    """True for folds whose answer cannot depend on partitioning or order: integer addition from 0 and
    multiplication from 1 (a string or list record fails on the int zero either way)."""
    return type(zero) is int and ((op is operator.add and zero == 0) or (op is operator.mul and zero == 1))


def _to_list(it):
    return it if isinstance(it, list) else list(it)


def _count(it):
    if isinstance(it, list):
        return len(it)
    n = 0
    for _ in it:
        n += 1
    return n


class ActionsMixin:
    _node: L.Node

    def _run(self, fn: Callable[[Iterator], Any], name: str, user_func: Callable | None = None,
             partitions: list[int] | None = None, answer: Callable[[L.Node], Any] | None = None,
             counts: Callable[[Any], int] | None = None, order_free: bool = False,
             concatenates: bool = False) -> list:
        action = PartitionAction(fn, name, user_func, answer, counts, order_free, concatenates)
        return self.context.session.run_job(self._node, action,  # type: ignore
                                            partitions)

    # -- collecting ------------------------------------------------------------------------------------
    def collect(self) -> list:
        """All records as a list, partitions in order.

        >>> ctx.parallelize([1, 2, 3]).collect()
        [1, 2, 3]
        """
        out: list = []
        for part in self._run(_to_list, "collect", counts=len, concatenates=True):
            out.extend(part)
        return out

    def collectAsMap(self) -> dict:
        """The ``(k, v)`` pairs as a dict (a later pair wins for a repeated key).

        >>> ctx.parallelize([("a", 1), ("b", 2)]).collectAsMap()
        {'a': 1, 'b': 2}
        """
        return dict(self.collect())

    def count(self) -> int:
        """The number of records.

        >>> ctx.parallelize(range(10)).count()
        10
        """
        return sum(self._run(_count, "count", answer=count_without_running, counts=int, order_free=True))

    def countByValue(self) -> dict:
        """``{record: how often it occurs}``.

        >>> dict(ctx.parallelize([1, 1, 2]).countByValue())
        {1: 2, 2: 1}
        """
        return _merge_counts(self._run(_count_values, "countByValue"))

    def countByKey(self) -> dict:
        """``{key: number of pairs with that key}``.

        >>> dict(ctx.parallelize([("a", 1), ("a", 2)]).countByKey())
        {'a': 2}
        """
        return _merge_counts(self._run(_count_keys, "countByKey"))

    def reduceByKeyLocally(self, func: Callable[[Any, Any], Any]) -> dict:
        """``reduceByKey`` merged into a dict here instead of a dataset (no shuffle).

        >>> ctx.parallelize([("a", 1), ("b", 2), ("a", 3)]).reduceByKeyLocally(add)
        {'a': 4, 'b': 2}
        """
        chk.check_callable(func, "reduceByKeyLocally", "func")

        def reduce_partition(it):
            out: dict = {}
            k = None
            try:
                for k, v in it:
                    out[k] = func(out[k], v) if k in out else v
            except (TypeError, ValueError) as e:
                if raised_here(e, reduce_partition):
                    if "unhashable" in str(e):
                        raise NotHashableKeyError(f"reduceByKeyLocally needs hashable keys, but a key is of "
                                                  f"type {type(k).__name__} ({e})") from None
                    raise not_a_pair("reduceByKeyLocally", e) from None
                raise
            return out

        merged: dict = {}
        for part in self._run(reduce_partition, "reduceByKeyLocally", func):
            for k, v in part.items():
                merged[k] = func(merged[k], v) if k in merged else v
        return merged

    def first(self) -> Any:
        """The first record; ``ValueError`` on an empty dataset.

        >>> ctx.parallelize([5, 6]).first()
        5
        """
        rs = self.take(1)
        if rs:
            return rs[0]
        raise ValueError("RDD is empty")

    def take(self, num: int) -> list:
        """The first ``num`` records. Runs the first partition, then more partitions per round (up to four
        times as many as scanned so far) until it has enough: PySpark's rounds, so user functions run on
        the same partitions on every executor.

        >>> ctx.parallelize(range(100), 10).take(3)
        [0, 1, 2]
        """
        chk.check_int(num, "take", "num")
        if num <= 0:
            return []
        items: list = []
        total = self.getNumPartitions()  # type: ignore[attr-defined]
        scanned = 0
        while len(items) < num and scanned < total:
            tries = _take_round(num, scanned, len(items))
            left = num - len(items)
            parts = self.context.session.run_job(  # type: ignore[attr-defined]
                self._node, PartitionAction(lambda it: list(islice(it, left)), "take", counts=len),
                list(range(scanned, min(scanned + tries, total))))
            for part in parts:
                items.extend(part)
            scanned += tries
        return items[:num]

    def toLocalIterator(self, prefetchPartitions: bool = False) -> Iterator:
        """An iterator over all records that holds one partition in this process at a time (one job
        per partition, as PySpark). ``prefetchPartitions`` computes the next partition while the
        current one is consumed.

        >>> [x for x in ctx.parallelize(range(10), 3).toLocalIterator()]
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
        """
        from .local_iterator import local_iterator

        return local_iterator(self.context.session, self._node, bool(prefetchPartitions))  # type: ignore[attr-defined]

    def isEmpty(self) -> bool:
        """True when the dataset has no records (stops at the first non-empty partition).

        >>> ctx.parallelize([]).isEmpty()
        True
        """
        return self.getNumPartitions() == 0 or len(self.take(1)) == 0  # type: ignore[attr-defined]

    def takeOrdered(self, num: int, key: Callable[[Any], Any] | None = None) -> list:
        """The ``num`` smallest records (by ``key``), ascending.

        >>> ctx.parallelize([5, 1, 4, 2]).takeOrdered(2)
        [1, 2]
        """
        chk.check_int(num, "takeOrdered", "num")
        if num < 0:
            raise ValueError("takeOrdered() needs num >= 0")
        parts = self._run(lambda it: heapq.nsmallest(num, it, key), "takeOrdered", key)
        return heapq.nsmallest(num, [x for p in parts for x in p], key)

    def top(self, num: int, key: Callable[[Any], Any] | None = None) -> list:
        """The ``num`` largest records (by ``key``), descending.

        >>> ctx.parallelize([5, 1, 4, 2]).top(2)
        [5, 4]
        """
        chk.check_int(num, "top", "num")
        if num < 0:
            raise ValueError("top() needs num >= 0")
        parts = self._run(lambda it: heapq.nlargest(num, it, key), "top", key)
        return heapq.nlargest(num, [x for p in parts for x in p], key)

    # -- folding ---------------------------------------------------------------------------------------
    def reduce(self, f: Callable[[Any, Any], Any]) -> Any:
        """Merge all records with an associative, commutative ``f``; ``ValueError`` when empty.

        >>> ctx.parallelize(range(1, 5)).reduce(lambda a, b: a + b)
        10
        """
        chk.check_callable(f, "reduce")

        def reduce_partition(it):
            it = iter(it)
            for first in it:
                return [functools.reduce(f, it, first)]
            return []

        values = [v for part in self._run(reduce_partition, "reduce", f) for v in part]
        if values:
            return functools.reduce(f, values)
        raise ValueError("Can not reduce() empty RDD")

    def fold(self, zeroValue: Any, op: Callable[[Any, Any], Any]) -> Any:
        """Fold each partition from ``zeroValue`` with ``op``, then fold the results from ``zeroValue``.

        >>> ctx.parallelize([1, 2, 3]).fold(0, add)
        6
        """
        chk.check_callable(op, "fold", "op")

        def fold_partition(it):
            return functools.reduce(op, it, copy.deepcopy(zeroValue))

        return functools.reduce(op, self._run(fold_partition, "fold", op, order_free=_neutral_fold(zeroValue, op)),
                                copy.deepcopy(zeroValue))

    def aggregate(self, zeroValue: Any, seqOp: Callable[[Any, Any], Any], combOp: Callable[[Any, Any], Any]) -> Any:
        """Fold each partition with ``seqOp`` from ``zeroValue``, merge partition results with ``combOp``.

        >>> ctx.parallelize([1, 2, 3]).aggregate((0, 0), lambda a, x: (a[0] + x, a[1] + 1),
        ...     lambda a, b: (a[0] + b[0], a[1] + b[1]))
        (6, 3)
        """
        chk.check_callable(seqOp, "aggregate", "seqOp")
        chk.check_callable(combOp, "aggregate", "combOp")

        def agg_partition(it):
            acc = copy.deepcopy(zeroValue)
            for x in it:
                acc = seqOp(acc, x)
            return acc

        return functools.reduce(combOp, self._run(agg_partition, "aggregate", seqOp), copy.deepcopy(zeroValue))

    def treeAggregate(self, zeroValue: Any, seqOp: Callable[[Any, Any], Any], combOp: Callable[[Any, Any], Any],
                      depth: int = 2) -> Any:
        """``aggregate`` whose partition results are merged in a tree of about ``depth`` levels (extra
        shuffles of a few records) instead of all at once here. Unlike ``aggregate``, ``zeroValue`` is
        not folded into the final merge (as PySpark).

        >>> ctx.parallelize([-5, -4, -3, -2, -1, 1, 2, 3, 4], 10).treeAggregate(0, add, add)
        -5
        """
        chk.check_callable(seqOp, "treeAggregate", "seqOp")
        chk.check_callable(combOp, "treeAggregate", "combOp")
        chk.check_int(depth, "treeAggregate", "depth")
        if depth < 1:
            raise ValueError("Depth cannot be smaller than 1 but got %d." % depth)
        if self.getNumPartitions() == 0:  # type: ignore[attr-defined]
            return zeroValue

        def aggregate_partition(it):
            acc = copy.deepcopy(zeroValue)
            for x in it:
                acc = seqOp(acc, x)
            yield acc

        partial = self.mapPartitions(aggregate_partition)  # type: ignore[attr-defined]
        n: float = partial.getNumPartitions()
        scale = max(int(math.ceil(n ** (1.0 / depth))), 2)
        # PySpark's rule: add a level only while it cuts the records the last merge sees
        while n > scale + n / scale:
            n /= scale
            partial = partial.mapPartitionsWithIndex(_tree_key(int(n))).reduceByKey(combOp, int(n)).values()
        return partial.reduce(combOp)

    def treeReduce(self, f: Callable[[Any, Any], Any], depth: int = 2) -> Any:
        """``reduce`` whose partition results are merged in a tree of about ``depth`` levels.

        >>> ctx.parallelize([-5, -4, -3, -2, -1, 1, 2, 3, 4], 10).treeReduce(add)
        -5
        """
        chk.check_callable(f, "treeReduce")
        chk.check_int(depth, "treeReduce", "depth")
        if depth < 1:
            raise ValueError("Depth cannot be smaller than 1 but got %d." % depth)

        def op(x, y):
            # (value, is_dummy): the zero is a marker, so f never sees it
            if x[1]:
                return y
            if y[1]:
                return x
            return f(x[0], y[0]), False

        reduced = self.map(_not_dummy).treeAggregate((None, True), op, op, depth)  # type: ignore[attr-defined]
        if reduced[1]:
            raise ValueError("Cannot reduce empty RDD.")
        return reduced[0]

    def sum(self) -> Any:
        """The sum of the records (0 when empty).

        >>> ctx.parallelize([1, 2, 3]).sum()
        6
        """
        return functools.reduce(operator.add, self._run(sum, "sum", order_free=True), 0)

    def max(self, key: Callable[[Any], Any] | None = None) -> Any:
        """The largest record (by ``key``); ``ValueError`` when empty.

        >>> ctx.parallelize([1, 5, 3]).max()
        5
        """
        return self._extreme(max, key, "max")

    def min(self, key: Callable[[Any], Any] | None = None) -> Any:
        """The smallest record (by ``key``); ``ValueError`` when empty.

        >>> ctx.parallelize([4, 1, 3]).min()
        1
        """
        return self._extreme(min, key, "min")

    def _extreme(self, pick: Callable, key: Callable[[Any], Any] | None, name: str) -> Any:
        if key is not None:
            chk.check_callable(key, name, "key")

        def extreme_partition(it):
            best = pick(it, key=key, default=_MISSING)
            return [] if best is _MISSING else [best]

        values = [v for part in self._run(extreme_partition, name, key) for v in part]
        if values:
            return pick(values, key=key)
        raise ValueError("Can not reduce() empty RDD")

    # -- statistics ------------------------------------------------------------------------------------
    def stats(self) -> StatCounter:
        """Count, mean, stdev, max and min in one pass.

        >>> ctx.parallelize([1.0, 2.0, 3.0]).stats().mean()
        2.0
        """
        parts = self._run(StatCounter, "stats")
        if not parts:
            raise ValueError("Can not reduce() empty RDD")
        return functools.reduce(lambda a, b: a.mergeStats(b), parts)

    def mean(self) -> float:
        """The mean of the records.

        >>> ctx.parallelize([1, 2, 3]).mean()
        2.0
        """
        return self.stats().mean()

    def variance(self) -> float:
        """The population variance."""
        return self.stats().variance()

    def stdev(self) -> float:
        """The population standard deviation.

        >>> ctx.parallelize([1, 2, 3]).stdev()
        0.816496580927726
        """
        return self.stats().stdev()

    def sampleVariance(self) -> float:
        """The sample variance (divides by n - 1)."""
        return self.stats().sampleVariance()

    def sampleStdev(self) -> float:
        """The sample standard deviation (divides by n - 1)."""
        return self.stats().sampleStdev()

    def histogram(self, buckets: int | list | tuple) -> tuple[list, list]:
        """Counts of records per bucket. ``buckets`` is a count of even buckets between min and max,
        or sorted bucket boundaries (the last bucket includes its upper bound).

        >>> ctx.parallelize(range(51)).histogram(2)
        ([0, 25, 50], [25, 26])
        """
        if isinstance(buckets, int) and not isinstance(buckets, bool):
            if buckets < 1:
                raise ValueError("number of buckets must be >= 1")
            filtered = self.filter(_comparable)  # type: ignore[attr-defined]
            minv, maxv = filtered.map(lambda x: (x, x)).reduce(lambda a, b: (min(a[0], b[0]), max(a[1], b[1])))
            if minv == maxv or buckets == 1:
                return [minv, maxv], [filtered.count()]
            try:
                inc = (maxv - minv) / buckets
            except TypeError:
                raise TypeError("Can not generate buckets with non-number in RDD") from None
            if isinf(inc):
                raise ValueError("Can not generate buckets with infinite value")
            inc = int(inc)
            if inc * buckets != maxv - minv:
                inc = (maxv - minv) * 1.0 / buckets
            bounds = [i * inc + minv for i in range(buckets)]
            bounds.append(maxv)
            even = True
        elif isinstance(buckets, (list, tuple)):
            if len(buckets) < 2:
                raise ValueError("buckets should have more than one value")
            if any(b is None or isinstance(b, float) and isnan(b) for b in buckets):
                raise ValueError("can not have None or NaN in buckets")
            if sorted(buckets) != list(buckets):
                raise ValueError("buckets should be sorted")
            if len(set(buckets)) != len(buckets):
                raise ValueError("buckets should not contain duplicated values")
            bounds = buckets  # returned as given (a tuple stays a tuple), like PySpark
            minv, maxv = bounds[0], bounds[-1]
            even, inc = False, None
            try:
                steps = [bounds[i + 1] - bounds[i] for i in range(len(bounds) - 1)]
            except TypeError:
                pass
            else:
                if max(steps) - min(steps) < 1e-10:
                    even, inc = True, (maxv - minv) / (len(bounds) - 1)
        else:
            raise TypeError("buckets should be a list or tuple or number(int or long)")

        def count_partition(it: Iterable) -> list:
            counters = [0] * len(bounds)
            for x in it:
                if x is None or (isinstance(x, float) and isnan(x)) or x > maxv or x < minv:
                    continue
                t = int((x - minv) / inc) if even else bisect_right(bounds, x) - 1
                counters[t] += 1
            last = counters.pop()
            counters[-1] += last
            return counters

        parts = self._run(count_partition, "histogram")
        if not parts:
            raise ValueError("Can not reduce() empty RDD")
        return bounds, [sum(col) for col in zip(*parts)]

    # -- keys and side effects -------------------------------------------------------------------------
    def lookup(self, key: Any) -> list:
        """The values of ``key``. Reads only the key's partition when the partitioner is known.

        >>> ctx.parallelize([("a", 1), ("b", 2), ("a", 3)]).lookup("a")
        [1, 3]
        """
        def has_key(kv):
            try:
                k, _ = kv
            except (TypeError, ValueError) as e:
                if raised_here(e, has_key):
                    raise not_a_pair("lookup", e) from None
                raise
            return k == key

        values = self.filter(has_key).values()  # type: ignore[attr-defined]
        partitioner = self._node.partitioner
        # a sort's range bounds are only sampled when a job runs: then every partition is read
        if partitioner is not None and getattr(partitioner, "bounds", ()) is not None:
            parts = values._run(_to_list, "lookup", partitions=[partitioner.partition(key)])
            return [x for p in parts for x in p]
        return values.collect()

    def foreach(self, f: Callable[[Any], Any]) -> None:
        """Call ``f`` on every record (in the task; use an accumulator to get values back).

        >>> seen = ctx.accumulator(0)
        >>> ctx.parallelize([1, 2]).foreach(lambda x: seen.add(x))
        >>> seen.value
        3
        """
        chk.check_callable(f, "foreach")

        def each(it):
            for x in it:
                f(x)

        self._run(each, "foreach", f)

    def foreachPartition(self, f: Callable[[Iterator], Any]) -> None:
        """Call ``f`` on each partition's iterator."""
        chk.check_callable(f, "foreachPartition")

        def each(it):
            f(it)

        self._run(each, "foreachPartition", f)


_MISSING = object()


def _not_dummy(x):
    return (x, False)


def _tree_key(n: int) -> Callable:
    """Key partition ``i``'s partial results by ``i % n``: the next tree level has ``n`` partitions."""
    def key(i, it):
        return ((i % n, x) for x in it)
    return key


def _count_values(it: Iterable) -> dict:
    counts: dict = defaultdict(int)
    x = None
    try:
        for x in it:
            counts[x] += 1
    except TypeError as e:
        if raised_here(e, _count_values) and "unhashable" in str(e):
            raise NotHashableKeyError(
                f"countByValue needs hashable records, but a record is of type {type(x).__name__} ({e}); "
                f"convert records first, e.g. lists to tuples") from None
        raise
    return counts


def _count_keys(it: Iterable) -> dict:
    counts: dict = defaultdict(int)
    k = None
    try:
        for k, _ in it:
            counts[k] += 1
    except (TypeError, ValueError) as e:
        if raised_here(e, _count_keys):
            if "unhashable" in str(e):
                raise NotHashableKeyError(
                    f"countByKey needs hashable keys, but a key is of type {type(k).__name__} ({e}); "
                    f"convert keys first, e.g. lists to tuples") from None
            raise not_a_pair("countByKey", e) from None
        raise
    return counts


def _merge_counts(parts: Iterable[dict]) -> dict:
    total: dict = defaultdict(int)
    for counts in parts:
        for k, v in counts.items():
            total[k] += v
    return total


def _comparable(x: Any) -> bool:
    if x is None:
        return False
    if type(x) is float and isnan(x):
        return False
    return True


def _take_round(num: int, scanned: int, found: int) -> int:
    """How many partitions the next round of ``take`` runs (PySpark's ``RDD.take``, scale-up factor 4).

    >>> _take_round(10, 0, 0), _take_round(10, 1, 0), _take_round(10, 2, 5), _take_round(10, 1, 9)
    (1, 4, 4, 1)
    """
    if scanned == 0:
        return 1
    if found == 0:
        return scanned * 4
    return min(max(int(1.5 * num * scanned / found) - scanned, 1), scanned * 4)
