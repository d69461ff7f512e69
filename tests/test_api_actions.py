"""Actions: values and error types equal PySpark's (see ``api_cases``)."""

from __future__ import annotations

from operator import add

import pytest
from api_cases import Raises, check

PAIRS = [("a", 1), ("b", 2), ("a", 3)]
INT_PAIRS = [(7, 1), (8, 2), (7, 3)]

CASES = {
    # collecting
    "collect": (lambda sc: sc.parallelize([3, None, (1, 2), "x"], 3).collect(), [3, None, (1, 2), "x"]),
    "collect-empty": (lambda sc: sc.parallelize([], 4).collect(), []),
    "collect-emptyRDD": (lambda sc: sc.emptyRDD().collect(), []),
    "collectAsMap": (lambda sc: sc.parallelize(PAIRS, 2).collectAsMap(), {"a": 3, "b": 2}),
    "collectAsMap-tuple-keys": (lambda sc: sc.parallelize([((1, 2), None)]).collectAsMap(), {(1, 2): None}),
    "count": (lambda sc: sc.parallelize(range(100), 7).count(), 100),
    "count-after-filter": (lambda sc: sc.parallelize(range(100), 7).filter(lambda x: x % 7 == 0).count(), 15),
    "count-empty": (lambda sc: sc.parallelize([], 3).count(), 0),
    "count-emptyRDD": (lambda sc: sc.emptyRDD().count(), 0),
    "countByValue": (lambda sc: dict(sc.parallelize([1, 2, 1, None, None, (1,)], 2).countByValue()),
                     {1: 2, 2: 1, None: 2, (1,): 1}),
    "countByValue-empty": (lambda sc: dict(sc.parallelize([], 2).countByValue()), {}),
    "first": (lambda sc: sc.parallelize([None, 2], 2).first(), None),
    "first-after-empty-partitions": (lambda sc: sc.parallelize([7], 5).first(), 7),
    "first-empty": (lambda sc: sc.parallelize([], 2).first(), Raises(ValueError)),
    "first-emptyRDD": (lambda sc: sc.emptyRDD().first(), Raises(ValueError)),
    "take": (lambda sc: sc.parallelize(range(10), 3).take(5), [0, 1, 2, 3, 4]),
    "take-zero": (lambda sc: sc.parallelize(range(10), 3).take(0), []),
    "take-negative": (lambda sc: sc.parallelize(range(10), 3).take(-1), []),
    "take-more-than-count": (lambda sc: sc.parallelize([1, 2], 4).take(10), [1, 2]),
    "take-empty": (lambda sc: sc.parallelize([], 2).take(3), []),
    "take-after-flatMap": (lambda sc: sc.parallelize([3, 0, 2], 3).flatMap(range).take(4), [0, 1, 2, 0]),
    "takeOrdered": (lambda sc: sc.parallelize([5, 1, 4, 2, 3], 2).takeOrdered(3), [1, 2, 3]),
    "takeOrdered-key": (lambda sc: sc.parallelize([5, 1, 4, 2, 3], 2).takeOrdered(2, key=lambda x: -x), [5, 4]),
    "takeOrdered-more-than-count": (lambda sc: sc.parallelize([2, 1], 3).takeOrdered(5), [1, 2]),
    "takeOrdered-zero": (lambda sc: sc.parallelize([2, 1], 3).takeOrdered(0), []),
    "top": (lambda sc: sc.parallelize([5, 1, 4, 2, 3], 2).top(2), [5, 4]),
    "top-key": (lambda sc: sc.parallelize(["aaa", "b", "cc"], 2).top(2, key=len), ["aaa", "cc"]),
    "top-tuples": (lambda sc: sc.parallelize(PAIRS, 2).top(2), [("b", 2), ("a", 3)]),
    "top-empty": (lambda sc: sc.parallelize([], 2).top(3), []),
    "isEmpty": (lambda sc: [sc.parallelize([], 3).isEmpty(), sc.emptyRDD().isEmpty(), sc.parallelize([0], 3).isEmpty(),
                            sc.parallelize(range(5), 2).filter(lambda x: x > 9).isEmpty()], [True, True, False, True]),
    # folding
    "reduce": (lambda sc: sc.parallelize(range(1, 11), 3).reduce(add), 55),
    "reduce-strings": (lambda sc: sc.parallelize(list("abcdef"), 3).reduce(add), "abcdef"),
    "reduce-single": (lambda sc: sc.parallelize([42], 4).reduce(add), 42),
    "reduce-empty": (lambda sc: sc.parallelize([], 2).reduce(add), Raises(ValueError)),
    "reduce-emptyRDD": (lambda sc: sc.emptyRDD().reduce(add), Raises(ValueError)),
    "fold": (lambda sc: sc.parallelize([1, 2, 3], 2).fold(0, add), 6),
    # the zero value is folded into every partition and once more into the merge, as in PySpark
    "fold-zero-per-partition": (lambda sc: sc.parallelize([1, 2, 3], 2).fold(10, add), 36),
    "fold-empty": (lambda sc: sc.parallelize([], 2).fold(0, add), 0),
    "fold-list": (lambda sc: sc.parallelize([[1], [2]], 2).fold([], add), [1, 2]),
    "aggregate": (lambda sc: sc.parallelize([1, 2, 3, 4], 3).aggregate(
        (0, 0), lambda acc, x: (acc[0] + x, acc[1] + 1), lambda a, b: (a[0] + b[0], a[1] + b[1])), (10, 4)),
    "aggregate-empty": (lambda sc: sc.parallelize([], 2).aggregate(0, add, add), 0),
    "aggregate-set": (lambda sc: sorted(sc.parallelize([1, 2, 2, 3], 2).aggregate(
        set(), lambda s, x: s | {x}, lambda a, b: a | b)), [1, 2, 3]),
    "sum": (lambda sc: sc.parallelize([1, 2, 3.5], 2).sum(), 6.5),
    "sum-empty": (lambda sc: sc.parallelize([], 2).sum(), 0),
    "sum-emptyRDD": (lambda sc: sc.emptyRDD().sum(), 0),
    "max": (lambda sc: sc.parallelize([3, 9, 1], 2).max(), 9),
    "max-key": (lambda sc: sc.parallelize(["aa", "b", "ccc"], 2).max(key=len), "ccc"),
    "max-empty": (lambda sc: sc.parallelize([], 2).max(), Raises(ValueError)),
    "min": (lambda sc: sc.parallelize([3, 9, 1], 2).min(), 1),
    "min-key": (lambda sc: sc.parallelize(PAIRS, 2).min(key=lambda kv: kv[1]), ("a", 1)),
    "min-empty": (lambda sc: sc.parallelize([], 2).min(), Raises(ValueError)),
    # keys and side effects
    "lookup": (lambda sc: sc.parallelize(PAIRS, 2).lookup("a"), [1, 3]),
    "lookup-missing": (lambda sc: sc.parallelize(PAIRS, 2).lookup("z"), []),
    "lookup-partitioned": (lambda sc: sorted(sc.parallelize(INT_PAIRS, 2).partitionBy(3).lookup(7)), [1, 3]),
    "lookup-partitioned-negative-key": (
        lambda sc: sc.parallelize([(-1, "m"), (2, "p")], 2).partitionBy(3).lookup(-1), ["m"]),
    "lookup-reduced": (lambda sc: sc.parallelize(INT_PAIRS, 2).reduceByKey(add, 4).lookup(7), [4]),
    "lookup-tuple-key": (lambda sc: sc.parallelize([((1, 2), 5), ((2, 1), 6)], 2).groupByKey(2).mapValues(list)
                         .lookup((1, 2)), [[5]]),
    "foreach": (lambda sc: (lambda acc: (sc.parallelize(range(1, 5), 2).foreach(lambda x: acc.add(x)), acc.value))(
        sc.accumulator(0)), (None, 10)),
    "foreachPartition": (
        lambda sc: (lambda acc: (sc.parallelize(range(10), 3).foreachPartition(lambda it: acc.add(1)), acc.value))(
            sc.accumulator(0)), (None, 3)),
    "foreachPartition-sum": (
        lambda sc: (lambda acc: (sc.parallelize(range(10), 3).foreachPartition(lambda it: acc.add(sum(it))),
                                 acc.value))(sc.accumulator(0)), (None, 45)),
}


@pytest.mark.parametrize("name", CASES)
def test_action(ctx, name):
    check(CASES, name, ctx)


def test_countByValue_and_countByKey_are_dicts(ctx):
    assert isinstance(ctx.parallelize([1]).countByValue(), dict)
    assert isinstance(ctx.parallelize([(1, 2)]).countByKey(), dict)


def test_take_runs_only_the_partitions_it_needs(ctx):
    acc = ctx.accumulator(0)
    data = ctx.parallelize(range(100), 10).mapPartitions(lambda it: (acc.add(1), list(it))[1])
    assert data.take(3) == [0, 1, 2]
    assert acc.value < 10
