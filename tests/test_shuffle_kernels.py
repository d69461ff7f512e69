"""The in-process shuffle kernels' shortcuts keep PySpark's answers: a grouped map output read once is
grown in place (no copy), one read twice or kept for reuse is copied; ``reduceByKey(operator.add)``
adds inline; sortByKey's sketch skips records."""

from __future__ import annotations

from operator import add

import pytest

from okplan import Context
from okplan.logical.partitioners import RangePartitioner
from okplan.physical.stage import ShuffleWrite

PAIRS = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5), ("a", 6)]


@pytest.fixture(scope="module")
def unoptimized():
    ctx = Context("local", optimize=False)
    yield ctx
    ctx.stop()


def _appended(vs):
    vs.append(0)
    return vs


def test_a_shuffle_read_twice_gives_each_read_its_own_lists(unoptimized):
    # without the optimizer nothing is shared: both sides of the union read the shuffle's buckets
    g = unoptimized.parallelize(PAIRS, 3).groupByKey(2)
    both = g.mapValues(_appended).union(g.mapValues(list))
    assert unoptimized.session.prepare(both._node).physical.read_once == frozenset()
    assert sorted(both.collect()) == [("a", [1, 3, 6]), ("a", [1, 3, 6, 0]), ("b", [2, 5]), ("b", [2, 5, 0]),
                                      ("c", [4]), ("c", [4, 0])]


def test_a_cartesian_product_reads_its_sides_many_times(unoptimized):
    g = unoptimized.parallelize(PAIRS, 3).groupByKey(2)
    product = g.mapValues(_appended).cartesian(unoptimized.parallelize([1, 2], 2))
    assert unoptimized.session.prepare(product._node).physical.read_once == frozenset()
    assert sorted((kv[0], kv[1], x) for kv, x in product.collect()) == [
        (k, vs + [0], x) for k, vs in [("a", [1, 3, 6]), ("b", [2, 5]), ("c", [4])] for x in (1, 2)]


def test_a_shuffle_read_once_is_handed_over(local_ctx):
    g = local_ctx.parallelize([(i % 3, i) for i in range(30)], 4).groupByKey(2)
    assert local_ctx.session.prepare(g._node).physical.read_once == frozenset({0})
    assert sorted(g.mapValues(list).collect()) == [(k, list(range(k, 30, 3))) for k in range(3)]


def test_a_bucket_read_once_leaves_the_jobs_blocks_as_its_reader_reaches_it():
    from okplan.exec.local import _MemoryBlocks

    blocks = _MemoryBlocks({})
    first, second = [("a", [1])], [("a", [2]), ("b", [3])]
    blocks.shuffles[0] = [[[], first], [[("c", [4])], second]]
    blocks.shuffles[1] = [[[], list(first)]]
    blocks.once = frozenset({0})
    read = iter(blocks.shuffle_buckets(0, 1))
    assert next(read) is first and blocks.shuffles[0][0][1] == [] and blocks.shuffles[0][1][1] is second
    assert next(read) is second and blocks.shuffles[0][1] == [[("c", [4])], []]    # partition 0 stays
    assert list(blocks.shuffle_buckets(1, 1)) == [first] and blocks.shuffles[1] == [[[], first]]  # read twice


def test_a_kept_grouped_shuffle_is_not_changed_by_the_job_that_kept_it(local_ctx):
    g = local_ctx.parallelize([(i % 3, i) for i in range(30)], 4).groupByKey(2)
    assert sorted(g.mapValues(lambda vs: len(_appended(vs))).collect()) == [(0, 11), (1, 11), (2, 11)]
    again = g.mapValues(len)
    stages = local_ctx.session.prepare(again._node).physical.stages
    assert any(isinstance(s.output, ShuffleWrite) and s.output.reused_from is not None for s in stages)
    assert sorted(again.collect()) == [(0, 10), (1, 10), (2, 10)]


@pytest.mark.parametrize("values", [[1, 2, 3, 4], ["x", "y", "z", "w"], [[1], [2], [3], [4]], [1.5, 2, 3, 4]])
def test_reduce_by_key_with_operator_add_is_plain_addition(local_ctx, values):
    pairs = [("k" if i % 2 else "j", v) for i, v in enumerate(values)]
    expected = {}
    for k, v in pairs:
        expected[k] = expected[k] + v if k in expected else v
    assert dict(local_ctx.parallelize(pairs, 2).reduceByKey(add, 2).collect()) == expected


def test_reduce_by_key_with_operator_add_raises_what_add_raises(local_ctx):
    with pytest.raises(TypeError, match="unsupported operand|can only concatenate"):
        local_ctx.parallelize([("k", 1), ("k", "a")], 1).reduceByKey(add).collect()


def test_the_sketch_reads_every_record_and_samples_evenly():
    sketch = RangePartitioner(None, True, None, 4).sketcher(1)   # 240 keys from one partition
    for n in (0, 10, 240, 241, 5000, 100_000):
        seen, sample = sketch((k, None) for k in range(n))
        assert seen == n and len(sample) == min(n, 240) and len(set(sample)) == len(sample)
        assert all(0 <= k < n for k in sample)
    seen, sample = sketch((k, None) for k in range(100_000))
    # a uniform sample: each tenth of the range holds about a tenth of the keys
    assert all(10 <= sum(1 for k in sample if k // 10_000 == d) <= 45 for d in range(10))
    with pytest.raises(TypeError, match="pairs"):
        sketch(iter([1, 2]))
