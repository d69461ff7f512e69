"""A sort samples its range bounds when a job runs, computing its input once."""

from __future__ import annotations


def test_sort_by_key_runs_no_job_until_an_action(ctx):
    ctx.parallelize([1]).collect()
    before = ctx.lastJobMetrics()
    ds = ctx.parallelize([(i % 13, i) for i in range(200)], 4).filter(lambda kv: kv[1] % 2).sortByKey(True, 3)
    assert ctx.lastJobMetrics() is before
    assert "bounds sampled at run time" in ds.toDebugString("physical")
    out = ds.collect()
    assert [k for k, _ in out] == sorted(k for k, _ in out) and len(out) == 100
    assert ctx.lastJobMetrics() is not before
    sizes = [len(p) for p in ds.glom().collect()]
    assert len(sizes) == 3 and all(sizes)          # the sampled bounds spread the keys


def test_sort_of_known_empty_input_keeps_its_partitions_as_pyspark(ctx):
    assert ctx.parallelize([], 3).sortBy(lambda x: x, numPartitions=5).getNumPartitions() == 3


def test_sort_errors_on_records_that_are_not_pairs(ctx):
    import pytest

    from okplan import NotAPairError

    with pytest.raises(NotAPairError):
        ctx.parallelize([1, 2, 3], 2).filter(lambda x: True).sortByKey(True, 2).collect()


def test_sort_computes_its_input_once(ctx):
    calls = ctx.accumulator(0)

    def tag(x):
        calls.add(1)
        return (x % 17, x)

    ds = ctx.parallelize(range(300), 3).map(tag).sortByKey(True, 3)
    assert [k for k, _ in ds.collect()] == sorted(x % 17 for x in range(300))
    assert calls.value == 300


def test_sort_leaves_no_temporary_cache(local_ctx):
    ds = local_ctx.parallelize([(3, "c"), (1, "a"), (2, "b")], 2).sortByKey(numPartitions=2)
    assert ds.take(1) == [(1, "a")] and ds.collect() == [(1, "a"), (2, "b"), (3, "c")]
    assert local_ctx.executor.cache == {}


def test_nested_sorts_resolve_innermost_first(ctx):
    ds = ctx.parallelize(range(50), 4).sortBy(lambda x: -x, numPartitions=3).map(lambda x: (x % 7, x)).sortByKey(True, 2)
    assert [k for k, _ in ds.collect()] == sorted(x % 7 for x in range(50))
