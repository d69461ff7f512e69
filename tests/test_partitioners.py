"""Range bounds from samples, and the partitioners that use them."""

from __future__ import annotations

from okplan.logical.partitioners import HashPartitioner, RangePartitioner, portable_hash, weighted_bounds


def test_weighted_bounds_split_the_weight_evenly():
    candidates = [(k, 1.0) for k in range(100)]
    assert weighted_bounds(candidates, 4) == [24, 49, 74]
    # a heavy key stands for many records: the bounds move towards it
    assert weighted_bounds([(0, 1.0), (1, 1.0), (2, 10.0), (3, 1.0)], 2) == [2]
    assert weighted_bounds([(5, 1.0)] * 10, 3) == [5]          # duplicates give one bound
    assert weighted_bounds([], 3) == [] and weighted_bounds([(1, 1.0)], 1) == []


def test_range_partitioning():
    bounds = [25, 50, 75]
    asc = RangePartitioner(bounds, True, None, 4)
    desc = RangePartitioner(bounds, False, None, 4)
    assert [asc.partition(k) for k in (0, 25, 26, 99)] == [0, 0, 1, 3]
    assert [desc.partition(k) for k in (0, 99)] == [3, 0]


def test_bounds_come_from_partition_sketches():
    unsampled = RangePartitioner(None, True, None, 2)
    assert "sampled at run time" in unsampled.describe() and unsampled != unsampled
    sketch = unsampled.sketcher(2)
    sketches = [sketch((k, None) for k in range(50)), sketch((k, None) for k in range(50, 100))]
    assert [seen for seen, _ in sketches] == [50, 50]
    sampled = unsampled.with_bounds_from(sketches)
    assert sampled.bounds and 30 < sampled.bounds[0] < 70


def test_hash_partitioners_compare_by_count_and_function():
    assert HashPartitioner(4) == HashPartitioner(4) and HashPartitioner(4) != HashPartitioner(5)
    assert HashPartitioner(4) != HashPartitioner(4, lambda k: 0)
    assert portable_hash(("a", 1, None)) == portable_hash(("a", 1, None)) and portable_hash(-1) == -2
