"""Narrow transformations: results and partitioning equal PySpark's (see ``api_cases``)."""

from __future__ import annotations

import pytest
from api_cases import check

WORDS = ["a b", "", "c d e"]
PAIRS = [("a", 1), ("b", None), (("t", 1), 3), (None, 4)]

CASES = {
    # map / flatMap / filter keep the input order and the partitioning
    "map": (lambda sc: sc.parallelize([1, 2, 3, 4, 5], 2).map(lambda x: x * 10).collect(), [10, 20, 30, 40, 50]),
    "map-glom": (lambda sc: sc.parallelize(range(5), 2).map(str).glom().collect(), [["0", "1"], ["2", "3", "4"]]),
    "map-none": (lambda sc: sc.parallelize([None, 1], 2).map(lambda x: x is None).collect(), [True, False]),
    "map-empty": (lambda sc: sc.parallelize([], 3).map(lambda x: x + 1).collect(), []),
    "map-more-partitions-than-records": (
        lambda sc: sc.parallelize([1, 2], 5).map(lambda x: -x).glom().collect(), [[], [], [-1], [], [-2]]),
    "flatMap": (lambda sc: sc.parallelize(WORDS, 2).flatMap(str.split).collect(), ["a", "b", "c", "d", "e"]),
    "flatMap-glom": (lambda sc: sc.parallelize([1, 2, 3], 3).flatMap(range).glom().collect(),
                     [[0], [0, 1], [0, 1, 2]]),
    "filter": (lambda sc: sc.parallelize(range(10), 3).filter(lambda x: x % 3 == 0).collect(), [0, 3, 6, 9]),
    "filter-none": (lambda sc: sc.parallelize([0, None, 1, "", "x"], 2).filter(bool).collect(), [1, "x"]),
    # partition functions
    "mapPartitions": (lambda sc: sc.parallelize([1, 2, 3, 4], 2).mapPartitions(lambda it: [sum(it)]).collect(),
                      [3, 7]),
    "mapPartitions-empty-partitions": (
        lambda sc: sc.parallelize([1, 2], 4).mapPartitions(lambda it: [len(list(it))]).collect(), [0, 1, 0, 1]),
    "mapPartitions-generator": (
        lambda sc: sc.parallelize(range(6), 3).mapPartitions(lambda it: (x * x for x in it)).collect(),
        [0, 1, 4, 9, 16, 25]),
    "mapPartitionsWithIndex": (
        lambda sc: sc.parallelize(list("abcde"), 3).mapPartitionsWithIndex(lambda i, it: [(i, "".join(it))]).collect(),
        [(0, "a"), (1, "bc"), (2, "de")]),
    # pair functions
    "mapValues": (lambda sc: sc.parallelize(PAIRS, 2).mapValues(lambda v: [v]).collect(),
                  [("a", [1]), ("b", [None]), (("t", 1), [3]), (None, [4])]),
    "flatMapValues": (lambda sc: sc.parallelize([("a", [1, 2]), ("b", []), ("c", [None])], 2)
                      .flatMapValues(lambda v: v).collect(), [("a", 1), ("a", 2), ("c", None)]),
    "keyBy": (lambda sc: sc.parallelize([1, 2, 3], 2).keyBy(lambda x: (x % 2, "k")).collect(),
              [((1, "k"), 1), ((0, "k"), 2), ((1, "k"), 3)]),
    "keys": (lambda sc: sc.parallelize(PAIRS, 3).keys().collect(), ["a", "b", ("t", 1), None]),
    "values": (lambda sc: sc.parallelize(PAIRS, 3).values().collect(), [1, None, 3, 4]),
    # glom shows how parallelize cuts the input
    "glom": (lambda sc: sc.parallelize(range(10), 3).glom().collect(), [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]),
    "glom-list": (lambda sc: sc.parallelize(list("abcdefg"), 3).glom().collect(),
                  [["a", "b"], ["c", "d"], ["e", "f", "g"]]),
    "glom-sparse": (lambda sc: sc.parallelize(range(5), 8).glom().collect(),
                    [[], [0], [], [1], [2], [], [3], [4]]),
    "glom-empty": (lambda sc: sc.parallelize([], 2).glom().collect(), [[], []]),
    # PySpark ships a list in batches of len // numSlices (at most 1024) records; partitions hold whole batches
    "glom-batches": (lambda sc: sc.parallelize(list(range(11)), 4).glom().collect(),
                     [[0, 1], [2, 3, 4, 5], [6, 7], [8, 9, 10]]),
    "glom-batch-sizes": (lambda sc: sc.parallelize(list(range(1000)), 7).glom().map(len).collect(),
                         [142, 142, 142, 142, 142, 142, 148]),
    "glom-large-batches": (lambda sc: sc.parallelize(list(range(3000)), 2).glom().map(len).collect(), [1024, 1976]),
    # ids
    "zipWithIndex": (lambda sc: sc.parallelize(list("abcde"), 3).zipWithIndex().collect(),
                     [("a", 0), ("b", 1), ("c", 2), ("d", 3), ("e", 4)]),
    "zipWithIndex-empty-partitions": (lambda sc: sc.parallelize(list("abc"), 6).zipWithIndex().glom().collect(),
                                      [[], [("a", 0)], [], [("b", 1)], [], [("c", 2)]]),
    "zipWithIndex-one-partition": (lambda sc: sc.parallelize(["a", "b"], 1).zipWithIndex().collect(),
                                   [("a", 0), ("b", 1)]),
    "zipWithUniqueId": (lambda sc: sc.parallelize(list("abcde"), 3).zipWithUniqueId().collect(),
                        [("a", 0), ("b", 1), ("c", 4), ("d", 2), ("e", 5)]),
    "zipWithUniqueId-after-filter": (
        lambda sc: sc.parallelize(range(8), 2).filter(lambda x: x % 3).zipWithUniqueId().collect(),
        [(1, 0), (2, 2), (4, 1), (5, 3), (7, 5)]),
    # union and coalesce
    "union": (lambda sc: sc.parallelize([1, 2], 2).union(sc.parallelize([2, 3], 1)).glom().collect(),
              [[1], [2], [2, 3]]),
    "union-self": (lambda sc: (lambda d: d.union(d).collect())(sc.parallelize([1, 2], 2)), [1, 2, 1, 2]),
    "union-empty": (lambda sc: sc.parallelize([], 2).union(sc.parallelize([7], 1)).collect(), [7]),
    "union-numPartitions": (lambda sc: sc.parallelize([1], 2).union(sc.parallelize([2], 3)).getNumPartitions(), 5),
    "coalesce": (lambda sc: sc.parallelize(range(10), 5).coalesce(2).glom().collect(),
                 [[0, 1, 2, 3], [4, 5, 6, 7, 8, 9]]),
    "coalesce-3-of-5": (lambda sc: sc.parallelize(range(10), 5).coalesce(3).glom().collect(),
                        [[0, 1], [2, 3, 4, 5], [6, 7, 8, 9]]),
    "coalesce-to-more": (lambda sc: sc.parallelize(range(4), 2).coalesce(5).getNumPartitions(), 2),
    "coalesce-shuffle": (lambda sc: sorted(sc.parallelize(range(10), 2).coalesce(4, shuffle=True).collect()),
                         list(range(10))),
    "coalesce-shuffle-numPartitions": (
        lambda sc: sc.parallelize(range(10), 2).coalesce(4, True).getNumPartitions(), 4),
    "getNumPartitions-narrow": (lambda sc: sc.parallelize(range(10), 4).map(str).filter(bool).getNumPartitions(), 4),
    # sample: the records picked differ from PySpark's (another generator), the invariants do not
    "sample-zero": (lambda sc: sc.parallelize(range(100), 4).sample(False, 0.0, 1).collect(), []),
    "sample-all": (lambda sc: sc.parallelize(range(100), 4).sample(False, 1.0, 1).count(), 100),
    "sample-subset": (lambda sc: (lambda s: (set(s) <= set(range(1000)), len(s) == len(set(s)), 300 < len(s) < 700))(
        sc.parallelize(range(1000), 4).sample(False, 0.5, 7).collect()), (True, True, True)),
    "sample-replacement": (
        lambda sc: (lambda s: (set(s) <= set(range(1000)), 1500 < len(s) < 2500, len(s) > len(set(s))))(
            sc.parallelize(range(1000), 4).sample(True, 2.0, 7).collect()), (True, True, True)),
}


@pytest.mark.parametrize("name", CASES)
def test_narrow(ctx, name):
    check(CASES, name, ctx)


def test_sample_same_seed_same_sample(ctx):
    data = ctx.parallelize(range(500), 4)
    assert data.sample(False, 0.3, 42).collect() == data.sample(False, 0.3, 42).collect()
    assert data.sample(True, 0.3, 42).collect() == data.sample(True, 0.3, 42).collect()
    assert data.sample(False, 0.3, 42).collect() != data.sample(False, 0.3, 43).collect()


@pytest.mark.parametrize("args, error", [
    ((False, -0.1), ValueError), ((False, 1.5), ValueError), ((False, "half"), TypeError),
])
def test_sample_arguments(ctx, args, error):
    with pytest.raises(error):
        ctx.parallelize([1]).sample(*args)


def test_narrow_ops_are_lazy(ctx):
    acc = ctx.accumulator(0)
    mapped = ctx.parallelize(range(10), 2).map(lambda x: acc.add(1) or x)
    assert acc.value == 0
    assert mapped.sum() == 45
    assert acc.value == 10


def test_transformations_return_new_datasets(ctx):
    base = ctx.parallelize([1, 2, 3], 2)
    doubled, negated = base.map(lambda x: 2 * x), base.map(lambda x: -x)
    assert (base.collect(), doubled.collect(), negated.collect()) == ([1, 2, 3], [2, 4, 6], [-1, -2, -3])
