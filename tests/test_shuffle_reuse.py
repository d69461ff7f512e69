"""Shuffle reuse: a later job on the same lineage skips the map stages of a shuffle an earlier job
finished (as Spark), so user functions below it run once; answers never change. The cluster executor
does not keep shuffles yet: there the tests check answers only."""

from __future__ import annotations

import gc
from operator import add

import pytest

from okplan import Context


def _keeps(ctx) -> bool:
    return ctx.session.reuse.enabled


def _counted(ctx, n=10_000, parts=4):
    seen = ctx.accumulator(0)

    def f(x):
        seen.add(1)
        return (x % 10, 1)

    return seen, ctx.parallelize(range(n), parts).map(f).reduceByKey(add)


def test_later_actions_skip_the_finished_shuffle(ctx):
    seen, counts = _counted(ctx)
    assert sorted(counts.collect()) == [(k, 1000) for k in range(10)]
    assert counts.count() == 10
    assert len(counts.take(3)) == 3
    assert seen.value == (10_000 if _keeps(ctx) else 30_000)


def test_explain_shows_the_skipped_stage(local_ctx):
    _, counts = _counted(local_ctx)
    assert "skipped" not in counts.toDebugString("physical")
    counts.collect()
    text = counts.toDebugString("physical")
    assert "shuffle map -> writes shuffle 0, hash(4), skipped (reused from job " in text
    assert "Fused" not in text                      # nothing of the map side is planned again


def test_reuse_after_cache_and_unpersist(ctx):
    seen, counts = _counted(ctx)
    counts.cache()
    try:
        assert counts.count() == 10 and seen.value == 10_000
    finally:
        counts.unpersist()
    assert sorted(counts.collect())[0] == (0, 1000)
    assert seen.value == (10_000 if _keeps(ctx) else 20_000)


def test_a_dataset_built_alike_runs_its_own_functions(local_ctx):
    seen = local_ctx.accumulator(0)

    def f(x):
        seen.add(1)
        return (x % 3, 1)

    src = local_ctx.parallelize(range(100), 2)
    src.map(f).reduceByKey(add).collect()
    src.map(f).reduceByKey(add).collect()          # a new dataset: PySpark calls f again
    assert seen.value == 200


def test_a_filter_moved_below_the_shuffle_makes_another_shuffle(ctx):
    seen, counts = _counted(ctx, 1000)
    counts.collect()
    assert sorted(counts.filter(lambda kv: kv[0] < 3).collect()) == [(0, 100), (1, 100), (2, 100)]
    assert sorted(counts.collect()) == [(k, 100) for k in range(10)]


def test_combiners_mutated_by_the_reduce_side_are_not_kept_mutated(ctx):
    pairs = ctx.parallelize([(i % 3, i) for i in range(30)], 3)
    lists = pairs.combineByKey(lambda v: [v], lambda c, v: c.append(v) or c, lambda a, b: a.extend(b) or a)
    first = sorted((k, sorted(v)) for k, v in lists.collect())
    assert sorted((k, sorted(v)) for k, v in lists.collect()) == first
    assert sorted(lists.mapValues(len).collect()) == [(0, 10), (1, 10), (2, 10)]


def test_a_sort_reuses_its_input_shuffle_and_its_own(ctx):
    seen, counts = _counted(ctx, 1000)
    counts.collect()
    ordered = counts.sortByKey(ascending=False)
    assert [k for k, _ in ordered.collect()] == list(range(9, -1, -1))
    assert ordered.take(2) == [(9, 100), (8, 100)]
    assert seen.value == (1000 if _keeps(ctx) else 3000)


def test_garbage_collection_and_stop_free_kept_outputs():
    ctx = Context("local[2]")
    _, counts = _counted(ctx, 100)
    counts.collect()
    assert len(ctx.executor.kept) == 1
    del counts
    gc.collect()
    assert not ctx.executor.kept and len(ctx.session.reuse) == 0
    _, again = _counted(ctx, 100)
    again.collect()
    ctx.stop()
    assert not ctx.executor.kept and len(ctx.session.reuse) == 0


def test_a_lost_output_is_computed_again():
    with Context("local[2]") as ctx:
        seen, counts = _counted(ctx, 100)
        counts.collect()
        ctx.executor.kept.clear()                  # as if evicted
        assert counts.count() == 10 and seen.value == 200
        assert counts.count() == 10 and seen.value == 200


def test_lost_between_planning_and_running_plans_again():
    with Context("local[2]") as ctx:
        seen, counts = _counted(ctx, 100)
        counts.collect()
        real = ctx.executor.has_kept_shuffle
        ctx.executor.has_kept_shuffle = lambda keep_id: real(keep_id) or True
        ctx.executor.kept.clear()                  # the session believes it is there; the run finds it gone
        assert sorted(counts.collect())[0] == (0, 10) and seen.value == 200


@pytest.mark.parametrize("how", ["option", "env"])
def test_reuse_can_be_switched_off(how, monkeypatch):
    if how == "env":
        monkeypatch.setenv("OKPLAN_REUSE_SHUFFLES", "0")
    with Context("local[2]", **({"reuse_shuffles": False} if how == "option" else {})) as ctx:
        seen, counts = _counted(ctx, 100)
        counts.collect()
        counts.count()
        assert seen.value == 200 and not ctx.executor.kept


def test_kept_outputs_stay_within_the_task_memory_budget():
    with Context("local[2]", task_memory="1k") as ctx:      # too small for this output: not kept
        seen = ctx.accumulator(0)

        def f(x):
            seen.add(1)
            return (x, x)

        groups = ctx.parallelize(range(2000), 2).map(f).groupByKey()
        groups.count()
        groups.count()
        assert seen.value == 4000 and not ctx.executor.kept
    with Context("local[2]", task_memory="32k") as ctx:     # room for one: the oldest goes first
        outputs = [ctx.parallelize(range(3000), 2).map(lambda x: (x, str(x))).groupByKey() for _ in range(3)]
        for ds in outputs:
            ds.count()
        assert 0 < len(ctx.executor.kept) < 3
        assert sum(n for n, _ in ctx.executor.kept.values()) <= 32 * 1024
        assert [ds.count() for ds in outputs] == [3000] * 3   # evicted ones are computed again
