"""Each optimizer rule fires on the plan it is for, and not where it would be wrong."""

from __future__ import annotations

from operator import add

import pytest

from okplan import Context
from okplan.logical import nodes as L
from okplan.logical.optimizer import optimize
from okplan.logical.plan import LogicalPlan
from okplan.logical.rules import (cull_empty, elide_shuffles, hash_join, lift_combiners, materialize_shared,
                                  merge_identical_subplans, push_filters)


def planned(ds):
    """(fired rule names, physical plan) of ``ds`` with the optimizer on."""
    _, _, fired, physical = ds.context._plan(ds._node, True)
    return [f.rule for f in fired], physical


def shuffles(ds, optimize_: bool = True) -> int:
    return len(ds.context._plan(ds._node, optimize_)[3].shuffles)


def run_rule(rule, ds):
    from okplan.logical.optimizer import RuleLog

    log = RuleLog(rule.__name__)
    plan = LogicalPlan(ds._node)
    return rule(plan, log), log.firings


def pairs(ctx, n=40, parts=4):
    return ctx.parallelize([(i % 7, i) for i in range(n)], parts)


# -- combiner lifting ------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda d: d.reduceByKey(add),
    lambda d: d.foldByKey(0, add),
    lambda d: d.aggregateByKey(0, add, add),
    lambda d: d.combineByKey(lambda v: v, add, add),
    lambda d: d.keys().distinct(),
], ids=["reduceByKey", "foldByKey", "aggregateByKey", "combineByKey", "distinct"])
def test_lift_combiners_fires_for_aggregating_shuffles(local_ctx, make):
    plan, fired = run_rule(lift_combiners, make(pairs(local_ctx)))
    assert len(fired) == 1
    shuffle = next(n for n in plan.nodes() if isinstance(n, L.Shuffle))
    assert shuffle.combined and isinstance(shuffle.input, L.PartialAggregate)


def test_lift_combiners_never_combines_group_by_key(local_ctx):
    plan, fired = run_rule(lift_combiners, pairs(local_ctx).groupByKey())
    assert fired == [] and plan.root is plan.root
    assert not any(isinstance(n, L.PartialAggregate) for n in plan.nodes())


def test_lift_combiners_dedupes_presence_only_inputs(local_ctx):
    a, b = local_ctx.parallelize([1, 2, 2, 3]), local_ctx.parallelize([2, 2, 2, 3])
    _, fired = run_rule(lift_combiners, a.subtract(b))
    assert len(fired) == 1 and "[1]" in fired[0].note      # only the right side: left duplicates count
    _, fired = run_rule(lift_combiners, a.intersection(b))
    assert len(fired) == 1 and "[0, 1]" in fired[0].note


def test_wordcount_shuffles_fewer_records_with_combiners(local_ctx):
    words = local_ctx.parallelize(["a b a c"] * 500, 4).flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(add)
    with local_ctx.optimizing(False):
        assert sorted(words.collect()) == [("a", 1000), ("b", 500), ("c", 500)]
        raw = local_ctx.lastJobMetrics().records_shuffled
    assert sorted(words.collect()) == [("a", 1000), ("b", 500), ("c", 500)]
    combined = local_ctx.lastJobMetrics().records_shuffled
    assert raw == 2000 and combined == 12          # 3 keys x 4 map partitions at most


# -- shuffle elision -------------------------------------------------------------------------------

def test_partition_by_then_reduce_by_key_has_one_shuffle(local_ctx):
    ds = pairs(local_ctx).partitionBy(8).reduceByKey(add, 8)
    assert shuffles(ds) == 1 and shuffles(ds, False) == 2
    assert sorted(ds.collect()) == sorted(pairs(local_ctx).reduceByKey(add).collect())


def test_join_of_co_partitioned_inputs_has_two_shuffles(local_ctx):
    a = pairs(local_ctx).reduceByKey(add, 8)
    b = pairs(local_ctx, 30).mapValues(lambda v: -v).reduceByKey(max, 8)
    joined = a.join(b, 8)
    assert shuffles(joined) == 2 and shuffles(joined, False) == 4
    with local_ctx.optimizing(False):
        expected = sorted(joined.collect())
    assert sorted(joined.collect()) == expected


@pytest.mark.parametrize("make", [
    lambda d: d.partitionBy(8).map(lambda kv: kv).reduceByKey(add, 8),      # map drops the partitioner
    lambda d: d.partitionBy(8).reduceByKey(add, 4),                          # another partition count
    lambda d: d.partitionBy(8, lambda k: k).reduceByKey(add, 8),             # another partition function
], ids=["map-drops-partitioner", "other-count", "other-function"])
def test_elision_does_not_fire_where_it_would_be_wrong(local_ctx, make):
    ds = make(pairs(local_ctx))
    _, fired = run_rule(elide_shuffles, ds)
    assert fired == []
    assert shuffles(ds) == 2


def test_preserves_partitioning_and_key_keeping_ops_keep_the_partitioner(local_ctx):
    base = pairs(local_ctx).partitionBy(8)
    for ds in (base.mapValues(str), base.filter(lambda kv: kv[1] > 3), base.flatMapValues(lambda v: [v, v]),
               base.map(lambda kv: kv, preservesPartitioning=True)):
        assert shuffles(ds.groupByKey(8)) == 1


def test_join_elides_only_the_co_partitioned_side(local_ctx):
    a = pairs(local_ctx).partitionBy(6)
    b = pairs(local_ctx, 20)
    joined = a.join(b, 6)
    join = next(n for n in optimize(LogicalPlan(joined._node))[0].nodes() if isinstance(n, L.HashJoin))
    assert join.elided == frozenset({0})
    assert shuffles(joined) == 2


# -- shared subplans -------------------------------------------------------------------------------

def test_identical_subplans_merge(local_ctx):
    src = local_ctx.parallelize(range(10), 2)

    def f(x):
        return x * 3

    ds = src.map(f).union(src.map(f))
    plan, fired = run_rule(merge_identical_subplans, ds)
    assert len(fired) == 1
    assert plan.root.inputs[0] is plan.root.inputs[1]
    assert ds.collect() == [x * 3 for x in range(10)] * 2


def test_different_lambdas_do_not_merge(local_ctx):
    src = local_ctx.parallelize(range(10), 2)
    _, fired = run_rule(merge_identical_subplans, src.map(lambda x: x).union(src.map(lambda x: x)))
    assert fired == []


def test_a_dataset_read_by_two_branches_is_computed_once(local_ctx):
    calls = local_ctx.accumulator(0)

    def expensive(x):
        calls.add(1)
        return (x % 3, x)

    shared = local_ctx.parallelize(range(30), 3).map(expensive)
    joined = shared.join(shared.mapValues(lambda v: v + 1))
    assert "materialize_shared" in planned(joined)[0]
    assert len(joined.collect()) == sum(10 * 10 for _ in range(3))
    assert calls.value == 30
    with local_ctx.optimizing(False):
        joined.collect()
    assert calls.value == 30 + 60


def test_sources_are_not_materialised(local_ctx):
    src = local_ctx.parallelize(range(10), 2)
    _, fired = run_rule(materialize_shared, src.union(src))
    assert fired == []


# -- filter pushdown -------------------------------------------------------------------------------

def _filter_depth(plan) -> int:
    """How many nodes lie below the (first) filter."""
    node = next(n for n in plan.nodes() if isinstance(n, L.Narrow) and n.kind == "filter")
    depth = 0
    while node.inputs:
        node = node.inputs[0]
        depth += 1
    return depth


@pytest.mark.parametrize("make, ordered", [
    (lambda c: c.parallelize(range(20), 2).union(c.parallelize(range(5), 1)).filter(lambda x: x % 2), True),
    (lambda c: c.parallelize(range(20), 4).sortBy(lambda x: -x).filter(lambda x: x % 2), True),
    (lambda c: c.parallelize([(i, i) for i in range(20)], 4).sortByKey(False).filter(lambda kv: kv[0] % 2), True),
    (lambda c: c.parallelize(range(20), 4).distinct().filter(lambda x: x % 2), False),
    (lambda c: c.parallelize([(i, i) for i in range(20)], 4).partitionBy(3).filter(lambda kv: kv[1] % 2), False),
    (lambda c: c.parallelize(range(20), 4).repartition(3).filter(lambda x: x % 2), False),
    (lambda c: c.parallelize(range(20), 4).coalesce(2).filter(lambda x: x % 2), True),
], ids=["union", "sortBy", "sortByKey", "distinct", "partitionBy", "repartition", "coalesce"])
def test_filters_move_below_what_they_commute_with(local_ctx, make, ordered):
    ds = make(local_ctx)
    optimized, fired = optimize(LogicalPlan(ds._node))
    assert "push_filters" in [f.rule for f in fired]
    assert _filter_depth(optimized) < _filter_depth(LogicalPlan(ds._node))
    with local_ctx.optimizing(False):
        expected = ds.collect()
    got = ds.collect()
    assert (got if ordered else sorted(got)) == (expected if ordered else sorted(expected))


@pytest.mark.parametrize("how", ["join", "leftOuterJoin", "rightOuterJoin", "fullOuterJoin"])
def test_key_only_filters_move_below_joins(local_ctx, how):
    a = local_ctx.parallelize([(i % 12, i) for i in range(60)], 3)
    b = local_ctx.parallelize([(i % 10, -i) for i in range(40)], 2)
    ds = getattr(a, how)(b).filter(lambda kv: kv[0] < 8)
    optimized, fired = optimize(LogicalPlan(ds._node))
    join = next(n for n in optimized.nodes() if isinstance(n, L.HashJoin))
    assert all(isinstance(i, L.Narrow) and i.kind == "filter" for i in join.inputs)
    assert optimized.root is join
    with local_ctx.optimizing(False):
        expected = sorted(ds.collect(), key=repr)
    assert sorted(ds.collect(), key=repr) == expected


def test_filters_stay_above_a_sort_by_a_user_keyfunc(local_ctx):
    calls = local_ctx.accumulator(0)

    def key(k):
        calls.add(1)
        return -k

    ds = local_ctx.parallelize([(i, i) for i in range(20)], 2).sortByKey(keyfunc=key).filter(lambda kv: kv[0] % 2)
    assert run_rule(push_filters, ds)[1] == []
    assert ds.collect() == [(i, i) for i in range(19, -1, -1) if i % 2]


def test_filters_never_skip_calls_of_user_functions(local_ctx):
    calls = local_ctx.accumulator(0)

    def validate(v):
        calls.add(1)
        return v

    ds = local_ctx.parallelize([(i % 10, i) for i in range(50)], 2).mapValues(validate).filter(lambda kv: kv[0] < 3)
    _, fired = run_rule(push_filters, ds)
    assert fired == []
    assert len(ds.collect()) == 15 and calls.value == 50


def test_sorted_output_keeps_its_order_after_pushdown(local_ctx):
    ds = local_ctx.parallelize(range(50), 4).sortBy(lambda x: -x).filter(lambda x: x % 3 == 0)
    assert ds.collect() == sorted((x for x in range(50) if x % 3 == 0), reverse=True)


@pytest.mark.parametrize("make", [
    lambda c: c.parallelize(range(20), 2).map(lambda x: x + 1).filter(lambda x: x % 2),
    lambda c: c.parallelize([(i % 3, i) for i in range(20)], 2).reduceByKey(add).filter(lambda kv: kv[1] > 50),
    lambda c: c.parallelize([(i % 3, i) for i in range(20)], 2).groupByKey().filter(lambda kv: len(kv[1]) > 6),
], ids=["map", "reduceByKey-value", "groupByKey"])
def test_filters_stay_above_what_they_do_not_commute_with(local_ctx, make):
    _, fired = run_rule(push_filters, make(local_ctx))
    assert fired == []


def test_filters_stay_above_cache(local_ctx):
    cached = local_ctx.parallelize(range(20), 2).map(lambda x: x * 2).cache()
    cached.count()
    ds = cached.filter(lambda x: x > 10)
    logical, optimized, fired, _ = local_ctx._plan(ds._node, True)
    assert "push_filters" not in [f.rule for f in fired]
    assert isinstance(optimized.root.input, L.CachedRead)
    assert ds.collect() == [x * 2 for x in range(20) if x * 2 > 10]


# -- dead branches and short cuts ------------------------------------------------------------------

def test_empty_union_inputs_are_culled(local_ctx):
    ds = local_ctx.parallelize(range(6), 3).union(local_ctx.emptyRDD().map(lambda x: x))
    plan, fired = run_rule(cull_empty, ds)
    assert len(fired) == 1 and not isinstance(plan.root, L.Union)
    assert ds.collect() == list(range(6))


def test_a_plan_with_nothing_to_compute_runs_no_job(local_ctx):
    local_ctx.parallelize([1]).count()
    before = local_ctx.lastJobMetrics()
    assert local_ctx.emptyRDD().map(lambda x: 1 / 0).collect() == []
    assert local_ctx.lastJobMetrics() is before


def test_count_of_sources_runs_no_tasks(local_ctx):
    local_ctx.parallelize([1]).collect()
    before = local_ctx.lastJobMetrics()
    ds = local_ctx.parallelize(range(100), 4).union(local_ctx.range(10)).coalesce(3).repartition(5)
    assert ds.count() == 110 and ds.zipWithUniqueId().count() == 110    # answered from sizes
    assert local_ctx.lastJobMetrics() is before
    assert local_ctx.parallelize(range(100), 4).filter(lambda x: x % 2).count() == 50   # filter: runs
    assert local_ctx.lastJobMetrics() is not before


@pytest.mark.parametrize("make", [
    lambda c: c.parallelize(range(100), 4).map(lambda x: x / 0).union(c.range(10)),
    lambda c: c.parallelize([(1, 2)], 2).mapValues(lambda v: v / 0).repartition(3),
    lambda c: c.parallelize([(1, 2)], 2).partitionBy(2, lambda k: k // 0),
    lambda c: c.parallelize([(1, 2)], 2).sortByKey(keyfunc=lambda k: k // 0),
], ids=["map", "mapValues", "partitionFunc", "sortByKey-keyfunc"])
def test_count_runs_user_functions(local_ctx, make):
    with pytest.raises(ZeroDivisionError):
        make(local_ctx).count()


@pytest.mark.parametrize("make", [
    lambda c: c.parallelize([1, 2, 3], 2).keys(),                 # records that are not pairs
    lambda c: c.parallelize([1, 2, 3], 2).partitionBy(2),
    lambda c: c.parallelize([([1], 2)], 2).partitionBy(2),        # an unhashable key
], ids=["keys", "partitionBy", "unhashable"])
def test_count_runs_what_can_fail_on_a_record(local_ctx, make):
    with pytest.raises(TypeError):
        make(local_ctx).count()


def test_take_runs_partitions_incrementally(local_ctx):
    seen = local_ctx.accumulator(0)

    def mark(i, it):
        seen.add(1)
        return it

    ds = local_ctx.parallelize(range(100), 10).mapPartitionsWithIndex(mark)
    assert ds.take(3) == [0, 1, 2]
    assert seen.value == 1
    assert ds.first() == 0 and not ds.isEmpty()
    assert seen.value == 3


def test_optimizer_can_be_switched_off():
    with Context("local[2]", optimize=False) as ctx:
        ds = ctx.parallelize([("a", 1)] * 10, 2).reduceByKey(add)
        assert "rules fired" not in ds.toDebugString() and "optimizer off" in ds.toDebugString()
        assert ds.collect() == [("a", 10)]


def test_filter_pushdown_below_a_node_read_twice_keeps_one_materialisation(local_ctx):
    # regression: moving both filters through `keys` copied it, and the copies were materialised
    # under one cache id ("materialised data ... is gone")
    d = local_ctx.parallelize([1, 2, 3, 4, 5, 5], 1).distinct(1).filter(lambda x: x % 2 != 0)
    ds = d.subtract(d.filter(lambda x: x % 3 == 0))
    _, physical = planned(ds)
    assert sum(1 for s in physical.stages if "materialize" in type(s.output).__name__.lower()) == 1
    assert sorted(ds.collect()) == [1, 5]


# -- join strategy ---------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["join", "leftOuterJoin", "rightOuterJoin", "fullOuterJoin"])
def test_joins_become_hash_joins_with_the_same_answer(local_ctx, how):
    a = local_ctx.parallelize([(1, "a"), (2, "b"), (1, "c"), (4, "d"), (None, "n")], 2)
    b = local_ctx.parallelize([(1, "x"), (3, "y"), (1, "z"), (None, "m")], 3)
    ds = getattr(a, how)(b)
    plan, fired = run_rule(hash_join, ds)
    assert len(fired) == 1 and isinstance(plan.root, L.HashJoin) and plan.root.how == how
    with local_ctx.optimizing(False):
        expected = sorted(ds.collect(), key=repr)
    assert sorted(ds.collect(), key=repr) == expected


def test_cogroup_and_set_operations_keep_their_cogroup(local_ctx):
    a, b = local_ctx.parallelize([(1, 2)]), local_ctx.parallelize([(1, 3)])
    for ds in (a.cogroup(b), a.subtractByKey(b), a.keys().intersection(b.keys())):
        assert run_rule(hash_join, ds)[1] == []


def test_hash_join_reports_unhashable_keys(local_ctx):
    from okplan import NotHashableKeyError

    a = local_ctx.parallelize([([1], 2)], 1)
    with pytest.raises(NotHashableKeyError, match="hashable"):
        a.join(a.mapValues(str), 1).collect()


def test_union_of_inputs_partitioned_alike_keeps_the_partitioner(ctx):
    a = ctx.parallelize([(i, i) for i in range(10)], 2).partitionBy(3)
    b = ctx.parallelize([(i, -i) for i in range(5)], 2).partitionBy(3)
    u = a.union(b)
    assert u.getNumPartitions() == 3 and u.partitioner == a.partitioner        # as Spark: 3, not 6
    assert u.glom().collect()[0] == [(0, 0), (3, 3), (6, 6), (9, 9), (0, 0), (3, -3)]
    summed = u.reduceByKey(add, 3)
    assert shuffles(summed) == 2                                               # the two partitionBy only
    assert sorted(summed.collect()) == [(i, 0 if i < 5 else i) for i in range(10)]
    assert a.union(ctx.parallelize([(1, 1)])).getNumPartitions() == 5          # unlike partitioners: plain union
