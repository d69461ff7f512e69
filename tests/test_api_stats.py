"""Statistics and histograms: equal to PySpark's (see ``api_cases``)."""

from __future__ import annotations

import math

import pytest
from api_cases import Raises, check

from okplan import StatCounter

NUMS = [1, 2, 3, 4, 10]
NAN = float("nan")


def rounded(x, places=9):
    return round(x, places)


def stats_tuple(s):
    return (s.count(), rounded(s.mean()), rounded(s.sum()), s.min(), s.max(), rounded(s.stdev()),
            rounded(s.variance()), rounded(s.sampleStdev()), rounded(s.sampleVariance()))


CASES = {
    "mean": (lambda sc: sc.parallelize(NUMS, 2).mean(), 4.0),
    "variance": (lambda sc: rounded(sc.parallelize(NUMS, 3).variance()), 10.0),
    "stdev": (lambda sc: rounded(sc.parallelize(NUMS, 3).stdev()), rounded(math.sqrt(10.0))),
    "sampleVariance": (lambda sc: rounded(sc.parallelize(NUMS, 3).sampleVariance()), 12.5),
    "sampleStdev": (lambda sc: rounded(sc.parallelize(NUMS, 3).sampleStdev()), rounded(math.sqrt(12.5))),
    "stats": (lambda sc: stats_tuple(sc.parallelize(NUMS, 3).stats()),
              (5, 4.0, 20.0, 1, 10, rounded(math.sqrt(10.0)), 10.0, rounded(math.sqrt(12.5)), 12.5)),
    "stats-floats-many-partitions": (lambda sc: stats_tuple(sc.parallelize([0.5, 1.5, 2.5], 6).stats()),
                                     (3, 1.5, 4.5, 0.5, 2.5, rounded(math.sqrt(2 / 3)), rounded(2 / 3), 1.0, 1.0)),
    "stats-max-min": (lambda sc: (lambda s: (s.max(), s.min()))(sc.parallelize([3, 1, 2], 2).stats()), (3, 1)),
    "stats-asDict": (lambda sc: sc.parallelize([1.0, 3.0], 2).stats().asDict(),
                     {"count": 2, "mean": 2.0, "sum": 4.0, "min": 1.0, "max": 3.0, "stdev": math.sqrt(2.0),
                      "variance": 2.0}),
    "stats-single": (lambda sc: (lambda s: (s.count(), s.variance(), math.isnan(s.sampleVariance())))(
        sc.parallelize([7], 2).stats()), (1, 0.0, True)),
    "stats-empty": (lambda sc: (lambda s: (s.count(), s.mean(), math.isnan(s.variance())))(
        sc.parallelize([], 2).stats()), (0, 0.0, True)),
    "mean-empty": (lambda sc: sc.parallelize([], 2).mean(), 0.0),
    "stats-emptyRDD": (lambda sc: sc.emptyRDD().stats(), Raises(ValueError)),
    "histogram-count": (lambda sc: sc.parallelize(range(51), 3).histogram(2), ([0, 25, 50], [25, 26])),
    "histogram-uneven-inc": (lambda sc: sc.parallelize([1, 2, 3, 4], 2).histogram(3),
                             ([1.0, 2.0, 3.0, 4], [1, 1, 2])),
    "histogram-one-bucket": (lambda sc: sc.parallelize([1, 5, 3], 2).histogram(1), ([1, 5], [3])),
    "histogram-same-values": (lambda sc: sc.parallelize([2, 2, 2], 2).histogram(4), ([2, 2], [3])),
    "histogram-floats": (lambda sc: sc.parallelize([0.0, 0.5, 1.0], 2).histogram(2), ([0.0, 0.5, 1.0], [1, 2])),
    "histogram-skips-none-nan": (lambda sc: sc.parallelize([1, None, NAN, 2, 3], 2).histogram(2),
                                 ([1, 2, 3], [1, 2])),
    "histogram-buckets": (lambda sc: sc.parallelize(range(51), 3).histogram([0, 10, 20, 50]),
                          ([0, 10, 20, 50], [10, 10, 31])),
    "histogram-even-buckets-list": (lambda sc: sc.parallelize([1, 2, 3, 4, 5, 6], 2).histogram([0, 2, 4, 6]),
                                    ([0, 2, 4, 6], [1, 2, 3])),
    "histogram-out-of-range": (lambda sc: sc.parallelize([-5, 0, 5, 50, 99], 2).histogram([0, 10, 50]),
                               ([0, 10, 50], [2, 1])),
    "histogram-tuple-buckets": (lambda sc: sc.parallelize([1, 2], 1).histogram((0, 1.5, 3)),
                                ((0, 1.5, 3), [1, 1])),
    "histogram-strings": (lambda sc: sc.parallelize(["ab", "ac", "b", "bd", "ef"], 2).histogram(["a", "b", "c"]),
                          (["a", "b", "c"], [2, 2])),
    "histogram-empty-buckets-list": (lambda sc: sc.parallelize([], 2).histogram([0, 10]), ([0, 10], [0])),
    "histogram-empty-count": (lambda sc: sc.parallelize([], 2).histogram(2), Raises(ValueError)),
    "histogram-unsorted": (lambda sc: sc.parallelize([1], 1).histogram([3, 1, 2]), Raises(ValueError)),
    "histogram-one-boundary": (lambda sc: sc.parallelize([1], 1).histogram([1]), Raises(ValueError)),
    "histogram-zero-buckets": (lambda sc: sc.parallelize([1], 1).histogram(0), Raises(ValueError)),
    "histogram-infinite": (lambda sc: sc.parallelize([1.0, float("inf")], 1).histogram(2), Raises(ValueError)),
    "histogram-not-numbers": (lambda sc: sc.parallelize(["a", "b"], 1).histogram(2), Raises(TypeError)),
    "histogram-bad-buckets": (lambda sc: sc.parallelize([1], 1).histogram("3"), Raises(TypeError)),
}


@pytest.mark.parametrize("name", CASES)
def test_stats(ctx, name):
    check(CASES, name, ctx)


def test_statcounter_merges_like_one_pass():
    left, right = StatCounter([1.0, 2.0]), StatCounter([3.0, 4.0, 10.0])
    merged = left.copy().mergeStats(right)
    whole = StatCounter([1.0, 2.0, 3.0, 4.0, 10.0])
    assert stats_tuple(merged) == stats_tuple(whole)
    assert stats_tuple(left.copy().mergeStats(left)) == stats_tuple(StatCounter([1.0, 2.0, 1.0, 2.0]))
    assert repr(whole).startswith("(count: 5, mean: 4.0")
