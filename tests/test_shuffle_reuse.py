"""Shuffle reuse: a later job on the same lineage skips the map stages of a shuffle an earlier job
finished (as Spark), so user functions below it run once; answers never change. Every executor keeps
shuffles: local in memory, the cluster in Redis under ``okplan:kept:`` (until the datasets go)."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from operator import add

import pytest
from cluster_helpers import cluster_context, hand_made_cluster, job_keys, kept_keys, redis_server, wait_until

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


def test_records_a_user_function_changes_in_place_are_not_kept_changed(ctx):
    parted = ctx.parallelize([(i, [i]) for i in range(6)], 2).partitionBy(3)
    assert sorted(parted.map(lambda kv: kv[1].append(-1) or kv).collect())[0] == (0, [0, -1])
    assert sorted(parted.collect()) == [(i, [i]) for i in range(6)]   # as PySpark: fresh records


def test_a_changeable_record_the_sample_missed_is_never_reused(ctx):
    def touch(kv):
        if type(kv[1]) is list:
            kv[1].append(-1)
        return kv

    # record 700 (index 200 of its bucket) is not among the records sampled when the bucket is kept
    parted = ctx.parallelize(range(1000), 2).map(lambda i: (i, [i] if i == 700 else i)).partitionBy(1)
    assert parted.map(touch).count() == 1000
    assert dict(parted.collect())[700] == [700]       # computed again: as PySpark, fresh records


def _grouped(ctx, pair, n, parts=3):
    seen = ctx.accumulator(0)

    def f(i):
        seen.add(1)
        return pair(i)   # fresh records each time the map side runs

    return seen, ctx.parallelize(range(n), parts).map(f).groupByKey(2)


def test_a_grouped_list_changed_after_a_job_is_not_seen_by_a_later_reusing_job(ctx):
    seen, groups = _grouped(ctx, lambda i: (i % 3, i), 30)
    expected = [(k, list(range(k, 30, 3))) for k in range(3)]
    first = sorted(groups.collect())
    assert first == expected
    for _, values in first:            # the caller's lists are its own
        values.append(-1)
        values.reverse()
    # a user function that changes its group in place, in a job that reuses the shuffle
    assert sorted(groups.mapValues(lambda vs: vs.append(-2) or vs.sort() or len(vs)).collect()) == \
        [(0, 11), (1, 11), (2, 11)]
    assert sorted(groups.collect()) == expected
    assert sorted(groups.mapValues(sorted).collect()) == expected
    assert seen.value == (30 if _keeps(ctx) else 120)


def test_a_changeable_value_the_grouped_sample_missed_is_never_reused(ctx):
    # key 700's value is a list; the groups sampled when a bucket is kept miss it
    seen, groups = _grouped(ctx, lambda i: (i, [i] if i == 700 else i), 1000, 2)
    assert groups.mapValues(lambda vs: type(vs[0]) is list and vs[0].append(-1)).count() == 1000
    # fresh values, as PySpark: computed again where the kept groups are the same objects (local),
    # read from files or Redis elsewhere
    assert dict(groups.collect())[700] == [[700]]


def test_grouped_buckets_are_kept_by_reference_when_keys_and_values_cannot_change():
    from okplan.exec.local import LocalExecutor, _Ref

    with Context("local[1]") as ctx:
        ints = ctx.parallelize(range(100), 2).map(lambda x: (x % 5, (x, str(x)))).groupByKey(2)
        lists = ctx.parallelize(range(100), 2).map(lambda x: (x % 5, [x])).groupByKey(2)
        ints.count()
        lists.count()
        executor: LocalExecutor = ctx.executor
        (_, by_ref), (_, pickled) = executor.kept.values()
        assert all(type(b) is _Ref and b.grouped for row in by_ref for b in row)  # a one-shot groupByKey pays no pickling
        assert all(type(b) is bytes for row in pickled for b in row if b)
        assert executor._kept_input(next(iter(executor.kept)))[0] == 100   # values, not groups
        assert sorted(ints.mapValues(len).collect()) == [(k, 20) for k in range(5)]
        assert sorted(lists.mapValues(len).collect()) == [(k, 20) for k in range(5)]


def test_unchangeable_records_are_kept_by_reference_others_pickled():
    from okplan.exec.local import LocalExecutor, _Ref

    with Context("local[1]") as ctx:
        scalars = ctx.parallelize(range(100), 2).map(lambda x: (x % 5, (x, str(x)))).partitionBy(2)
        lists = ctx.parallelize(range(100), 2).map(lambda x: (x % 5, [x])).partitionBy(2)
        scalars.count()
        lists.count()
        executor: LocalExecutor = ctx.executor
        (_, by_ref), (_, pickled) = executor.kept.values()
        assert all(type(b) is _Ref for row in by_ref for b in row)       # one-shot jobs pay no pickling
        assert all(type(b) is bytes for row in pickled for b in row if b)
        assert sorted(scalars.collect())[:2] == [(0, (0, "0")), (0, (5, "5"))]
        assert sorted(lists.values().map(len).collect()) == [1] * 100


def test_the_pool_keeps_its_map_files_and_deletes_them_with_the_dataset():
    import os

    from okplan.exec.local_pool import FileBlock

    with Context("local[2]", pool_min_records=0, pool_min_bytes=0) as ctx:
        seen, counts = _counted(ctx, 1000)
        counts.collect()
        (_, kept), = ctx.executor.kept.values()
        files = {b.path for row in kept for b in row}
        assert all(type(b) is FileBlock for row in kept for b in row) and all(map(os.path.exists, files))
        assert counts.count() == 10 and seen.value == 1000                 # read from those files
        del counts, kept
        gc.collect()
        assert not ctx.executor.kept and not any(map(os.path.exists, files))


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


# -- on a real cluster: kept blocks in Redis --------------------------------------------------------------
def test_cluster_kept_blocks_live_with_their_datasets_and_go_at_stop():
    """Kept map outputs stay in Redis (expiring, refreshed like caches) while a dataset reaches them;
    garbage collection deletes them, and so does ``ctx.stop()`` (Redis outlives this client here)."""
    with redis_server() as redis_url, hand_made_cluster(redis_url, workers=2) as url:
        ctx = Context(url)
        try:
            assert wait_until(lambda: ctx.executor.hello()["workers"] == 2, 15)
            seen, counts = _counted(ctx)
            assert sorted(counts.collect()) == [(k, 1000) for k in range(10)]
            assert counts.count() == 10 and len(counts.take(3)) == 3
            assert seen.value == 10_000                            # f ran once per record
            assert "skipped (reused from job " in counts.toDebugString("physical")
            kept = kept_keys(ctx)
            assert len(kept) == 4                                  # the 4 map tasks' outputs
            assert wait_until(lambda: job_keys(ctx) == [], 5), job_keys(ctx)   # take's job: cancelled
            assert 0 < ctx.executor.store.r.ttl(kept[0]) <= ctx.executor.cache_ttl
            del counts
            gc.collect()
            assert wait_until(lambda: kept_keys(ctx) == [], 5), kept_keys(ctx)
            _, again = _counted(ctx, 100)
            again.collect()
            assert kept_keys(ctx)
        finally:
            ctx.stop()
        store = ctx.executor.store
        store.r.ping()  # the closed client reconnects: Redis is still up
        assert store.r.keys("okplan:*") == []


def test_cluster_lost_kept_blocks_are_computed_again():
    with cluster_context(2) as ctx:
        seen, counts = _counted(ctx, 1000)
        counts.collect()
        ctx.executor.store.r.delete(kept_keys(ctx)[0])        # evicted: found when the next job is planned
        assert counts.count() == 10 and seen.value == 2000
        assert counts.count() == 10 and seen.value == 2000     # kept again by the job that recomputed it
        # lost after planning: the reduce side finds a block missing, the master fails the job as
        # cache_lost, and the session plans it again without the lost output
        ctx.executor.has_kept_shuffle = lambda keep_id: True   # the plan believes it is there
        ctx.executor.store.r.delete(*kept_keys(ctx))
        try:
            assert sorted(counts.collect()) == [(k, 100) for k in range(10)] and seen.value == 3000
        finally:
            del ctx.executor.has_kept_shuffle
        assert counts.count() == 10 and seen.value == 3000
        # kept shuffles take at most a quarter of Redis's maxmemory; past it, least recently used go
        assert ctx.executor.kept_budget == ctx.executor.store.max_memory() // 4 > 0
        ctx.executor.kept_budget = 1
        more, other = _counted(ctx, 1000)
        assert other.count() == 10 and other.count() == 10 and more.value == 2000
        assert wait_until(lambda: kept_keys(ctx) == [], 5), kept_keys(ctx)


def test_cluster_reuse_survives_a_killed_worker():
    """A worker killed while the kept shuffle is written: its tasks run again elsewhere (accumulators
    count successful tasks once), the output is kept, and later jobs reuse it, also after a second kill."""
    with cluster_context(2) as ctx:
        cluster = ctx.executor
        seen = ctx.accumulator(0)

        def slow(x):
            seen.add(1)
            time.sleep(0.0005)
            return (x % 10, 1)

        counts = ctx.parallelize(range(4000), 8).map(slow).reduceByKey(add)
        victim = cluster.worker_pids()[0]
        killer = threading.Timer(0.3, os.kill, (victim, signal.SIGKILL))
        killer.start()
        assert sorted(counts.collect()) == [(k, 400) for k in range(10)]
        killer.join()
        assert seen.value == 4000
        assert wait_until(lambda: cluster.hello()["workers"] == 2, 15)
        os.kill(cluster.worker_pids()[1], signal.SIGKILL)     # blocks live in Redis, not in workers
        assert counts.count() == 10 and dict(counts.collect())[3] == 400
        assert seen.value == 4000
