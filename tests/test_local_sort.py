"""On the local executor a sort samples its range bounds inside the sorting job."""

from __future__ import annotations


def test_sort_by_key_runs_no_job_until_an_action(local_ctx):
    local_ctx.parallelize([1]).collect()
    before = local_ctx.lastJobMetrics()
    ds = local_ctx.parallelize([(i % 13, i) for i in range(200)], 4).filter(lambda kv: kv[1] % 2).sortByKey(True, 3)
    assert local_ctx.lastJobMetrics() is before
    assert "bounds sampled in the job" in ds.toDebugString("physical")
    out = ds.collect()
    assert [k for k, _ in out] == sorted(k for k, _ in out) and len(out) == 100
    assert local_ctx.lastJobMetrics() is not before
    sizes = [len(p) for p in ds.glom().collect()]
    assert len(sizes) == 3 and all(sizes)          # the sampled bounds spread the keys


def test_sort_of_known_empty_input_keeps_its_partitions_as_pyspark(local_ctx):
    assert local_ctx.parallelize([], 3).sortBy(lambda x: x, numPartitions=5).getNumPartitions() == 3


def test_sort_errors_on_records_that_are_not_pairs(local_ctx):
    import pytest

    from okplan import NotAPairError

    with pytest.raises(NotAPairError):
        local_ctx.parallelize([1, 2, 3], 2).filter(lambda x: True).sortByKey(True, 2).collect()
