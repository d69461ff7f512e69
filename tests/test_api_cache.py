"""cache / persist / unpersist across jobs, identity (id, name, setName), getNumPartitions and
toDebugString. Computations are counted with accumulators, so the tests hold on every executor."""

from __future__ import annotations

from operator import add

import pytest


def counted(ctx, data=range(10), slices=3):
    """A dataset whose map adds 1 to the returned accumulator per record it computes."""
    acc = ctx.accumulator(0)
    return ctx.parallelize(list(data), slices).map(lambda x: acc.add(1) or x), acc


def test_cache_keeps_partitions_across_jobs(ctx):
    ds, acc = counted(ctx)
    assert ds.cache() is ds and ds.is_cached
    assert ds.collect() == list(range(10))
    assert acc.value == 10
    assert ds.sum() == 45 and ds.map(lambda x: -x).collect() == [-x for x in range(10)]
    assert ds.glom().collect() == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    assert acc.value == 10
    ds.unpersist()
    assert ds.sum() == 45 and acc.value == 20


def test_persist_then_unpersist_recomputes(ctx):
    ds, acc = counted(ctx)
    assert ds.persist() is ds
    ds.collect()
    ds.collect()
    assert acc.value == 10
    assert ds.unpersist() is ds and not ds.is_cached
    ds.collect()
    ds.collect()
    assert acc.value == 30


def test_cache_after_shuffle_then_reuse_in_two_branches(ctx):
    acc = ctx.accumulator(0)
    sums = (ctx.parallelize([(i % 3, i) for i in range(12)], 4).mapValues(lambda v: acc.add(1) or v)
            .reduceByKey(add).cache())
    assert sorted(sums.collect()) == [(0, 18), (1, 22), (2, 26)]
    assert acc.value == 12
    evens = sums.filter(lambda kv: kv[1] % 2 == 0).keys()
    doubled = sums.mapValues(lambda v: 2 * v)
    assert sorted(evens.collect()) == [0, 1, 2]
    assert sorted(doubled.join(sums).values().collect()) == [(36, 18), (44, 22), (52, 26)]
    assert acc.value == 12
    sums.unpersist()


def test_a_dataset_used_twice_in_one_job_gives_the_right_answer(ctx):
    base = ctx.parallelize(range(6), 2).map(lambda x: (x % 2, x))
    both = base.union(base.mapValues(lambda v: -v)).reduceByKey(add)
    assert sorted(both.collect()) == [(0, 0), (1, 0)]
    assert sorted(base.join(base).values().map(lambda vw: vw[0] * vw[1]).collect()) == sorted(
        a * b for a in range(6) for b in range(6) if a % 2 == b % 2)


def test_cache_of_an_empty_dataset(ctx):
    ds = ctx.parallelize([], 3).cache()
    assert ds.collect() == [] and ds.count() == 0 and ds.getNumPartitions() == 3
    ds.unpersist()


def test_caching_a_transformed_dataset_does_not_cache_its_parent(ctx):
    base, acc = counted(ctx, range(4), 2)
    child = base.map(lambda x: x + 1).cache()
    assert child.collect() == [1, 2, 3, 4]
    assert base.collect() == [0, 1, 2, 3]
    assert acc.value == 8
    assert child.collect() == [1, 2, 3, 4] and acc.value == 8
    child.unpersist()


def test_id_is_unique_and_stable(ctx):
    a, b = ctx.parallelize([1]), ctx.parallelize([1])
    assert isinstance(a.id(), int) and a.id() == a.id() and a.id() != b.id()
    assert a.map(str).id() not in (a.id(), b.id())


def test_name_and_setName(ctx):
    ds = ctx.parallelize([1, 2], 2)
    assert ds.name() is None
    assert ds.setName("numbers") is ds and ds.name() == "numbers"
    assert ds.collect() == [1, 2]
    assert "numbers" in ds.map(str).toDebugString()
    with pytest.raises(TypeError):
        ds.setName(3)


def test_setName_on_a_cached_dataset_keeps_the_cache(ctx):
    ds, acc = counted(ctx, range(3), 1)
    ds.cache().collect()
    ds.setName("renamed")
    assert ds.collect() == [0, 1, 2] and acc.value == 3
    ds.unpersist()


@pytest.mark.parametrize("build, partitions", [
    (lambda c: c.parallelize(range(10), 4), 4),
    (lambda c: c.parallelize(range(10), 4).map(str).filter(bool), 4),
    (lambda c: c.parallelize(range(10), 4).coalesce(2), 2),
    (lambda c: c.parallelize([(1, 2)], 4).reduceByKey(add), 4),
    (lambda c: c.parallelize([(1, 2)], 4).reduceByKey(add, 3), 3),
    (lambda c: c.parallelize([(1, 2)], 4).join(c.parallelize([(1, 2)], 3)), 7),
    (lambda c: c.parallelize(range(3), 2).cartesian(c.parallelize(range(3), 3)), 6),
    (lambda c: c.emptyRDD(), 0),
])
def test_getNumPartitions(ctx, build, partitions):
    assert build(ctx).getNumPartitions() == partitions


def test_toDebugString_shows_the_plans(ctx):
    ds = ctx.parallelize(["a b", "b"], 2).flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(add)
    text = ds.toDebugString()
    assert isinstance(text, str)
    for section in ("== Logical plan ==", "== Optimized plan ==", "== Physical plan"):
        assert section in text
    assert "FlatMap" in text and "Shuffle" in text and "reduceByKey" in text
