"""Adaptive planning (okplan/adaptive.py): a join whose small side is under the broadcast threshold runs
as a broadcast hash join where its output's partitioning cannot be observed; answers, partition counts
and user function calls stay what they are with adaptive planning off, on every executor."""

from __future__ import annotations

import contextlib
import re
from operator import add, mul

import pytest

from okplan import Context
from okplan.adaptive import hidden_nodes, parse_bytes, records_at_most
from okplan.logical.optimizer import optimize
from okplan.logical.plan import LogicalPlan


@contextlib.contextmanager
def adaptive(ctx, on: bool = True, threshold: int | None = None):
    """Adaptive planning on or off (and the broadcast threshold) for a block, then as before."""
    s = ctx.session
    saved = s.adaptive, s.broadcast_threshold
    s.adaptive = on
    if threshold is not None:
        s.broadcast_threshold = threshold
    try:
        yield
    finally:
        s.adaptive, s.broadcast_threshold = saved


def _sides(ctx, n=2_000, keys=50, parts=4):
    left = ctx.parallelize([(i % (keys * 2), i) for i in range(n)], parts)
    right = ctx.parallelize([(k, k * 10) for k in range(keys)], 2)
    return left, right


def _notes(ctx, ds) -> list[str]:
    return [line for line in ds.toDebugString("metrics").splitlines() if line.startswith("adaptive:")]


JOINS = ["join", "leftOuterJoin", "rightOuterJoin"]


@pytest.mark.parametrize("how", JOINS)
def test_broadcast_join_gives_the_same_answers_as_the_shuffle_join(ctx, how):
    left, right = _sides(ctx)
    a, b = (left, right) if how != "rightOuterJoin" else (right, left)
    joined = getattr(a, how)(b).mapValues(lambda vw: (vw[0] or 0) + (vw[1] or 0))
    values = joined.values()
    with adaptive(ctx, False):
        expected = (joined.count(), values.sum(), values.fold(0, add), joined.getNumPartitions())
    with adaptive(ctx, True):
        got = (joined.count(), values.sum(), values.fold(0, add), joined.getNumPartitions())
        note, = _notes(ctx, values)
        assert "broadcast join" in note
    assert got == expected


def test_inner_join_broadcasts_the_smaller_left_side(ctx):
    left, right = _sides(ctx)
    joined = right.join(left).values()
    with adaptive(ctx, True):
        products = joined.map(lambda vw: vw[0] * vw[1])
        assert products.fold(0, add) == sum((i % 100) * 10 * i for i in range(2_000) if i % 100 < 50)
        assert "left side 50 records" in _notes(ctx, products)[0]


def test_threshold_decides_broadcast_or_shuffle(ctx):
    left, _ = _sides(ctx)
    right = ctx.parallelize([(k, "%030d" % k) for k in range(50)], 2)  # about 2 kB pickled
    joined = left.join(right).values().map(lambda vw: vw[0] + len(vw[1]))
    expected = sum(i + 30 for i in range(2_000) if i % 100 < 50)
    with adaptive(ctx, True, threshold=10_000):
        assert joined.sum() == expected
        note, = _notes(ctx, joined)
        assert "broadcast join, right side 50 records" in note
    with adaptive(ctx, True, threshold=1_000):
        assert joined.sum() == expected
        note, coalesced = _notes(ctx, joined)  # the shuffle join's 6 reduce partitions: 1 task
        assert "6 reduce partitions read by 1 task" in coalesced
        assert "shuffle join kept, right side 50 records" in note and "over the broadcast threshold 1000 B" in note
        assert "BroadcastHashJoin" not in joined.toDebugString("metrics")
    with adaptive(ctx, True, threshold=0):
        assert joined.sum() == expected
        assert not any("broadcast" in n for n in _notes(ctx, joined))


def test_the_small_side_functions_run_once_whether_broadcast_or_not(ctx):
    for threshold in (10 * 1024 * 1024, 1):
        seen = ctx.accumulator(0)

        def f(kv):
            seen.add(1)
            return kv

        left, right = _sides(ctx)
        with adaptive(ctx, True, threshold=threshold):
            assert left.join(right.map(f)).count() == 1_000
        assert seen.value == 50


@pytest.mark.parametrize("action", ["collect", "take", "glom", "reduce", "foldstr", "countByKey"])
def test_no_broadcast_where_partitioning_or_order_shows(ctx, action):
    left, right = _sides(ctx, n=200)
    joined = left.join(right)
    run = {"collect": lambda d: d.collect(), "take": lambda d: d.take(5), "glom": lambda d: d.glom().count(),
           "reduce": lambda d: d.values().map(str).reduce(add),
           "foldstr": lambda d: d.values().map(str).fold("", add),
           "countByKey": lambda d: d.countByKey()}[action]
    with adaptive(ctx, False):
        expected = run(joined)
    with adaptive(ctx, True):
        assert run(joined) == expected
        if action != "take":
            assert _notes(ctx, joined) == [] or "broadcast" not in ctx.session.explain(joined._node, analyze=True)


def test_a_shuffle_after_the_join_hides_its_partitioning(ctx):
    left, right = _sides(ctx)
    totals = left.join(right).mapValues(lambda vw: vw[0]).reduceByKey(add, 3)
    values = totals.values()
    with adaptive(ctx, False):
        expected = values.sum(), totals.getNumPartitions()
    with adaptive(ctx, True):
        assert (values.sum(), totals.getNumPartitions()) == expected
        assert "broadcast join" in _notes(ctx, values)[0]


def test_an_elided_shuffle_after_the_join_keeps_the_shuffle_join(local_ctx):
    left, right = _sides(local_ctx)
    # the join's partitioner (hash, 6 partitions) is reduceByKey's: its shuffle is elided, so the join's
    # partitioning is relied on and the join must stay a shuffle join
    totals = left.join(right).mapValues(lambda vw: vw[0]).reduceByKey(add).values()
    assert totals.sum() == sum(i for i in range(2_000) if i % 100 < 50)
    assert _notes(local_ctx, totals) == []


def test_hidden_nodes_follow_the_readers(local_ctx):
    left, right = _sides(local_ctx)
    plan = optimize(LogicalPlan(left.join(right).values().map(str)._node))[0]
    assert len(hidden_nodes(plan, order_free=False)) == 0
    kinds = {n.op_name for n in plan.nodes() if id(n) in hidden_nodes(plan, order_free=True)}
    assert {"Map", "HashJoin", "Parallelize"} <= kinds
    plan = optimize(LogicalPlan(left.join(right).glom()._node))[0]
    assert {n.op_name for n in plan.nodes() if id(n) in hidden_nodes(plan, True)} == {"Glom"}


def test_record_bounds(local_ctx):
    ds = local_ctx.parallelize(range(10), 2)
    assert records_at_most(ds.filter(bool).map(str).union(ds)._node) == 20
    assert records_at_most(ds.map(lambda x: (x, x)).reduceByKey(add)._node) == 10
    assert records_at_most(ds.flatMap(range)._node) is None


def test_settings(monkeypatch):
    assert parse_bytes("10MB") == 10 * 1024 * 1024 and parse_bytes("2 kb") == 2048 and parse_bytes("5") == 5
    with pytest.raises(ValueError, match="OKPLAN_BROADCAST_THRESHOLD must be a size"):
        parse_bytes("ten")
    monkeypatch.setenv("OKPLAN_ADAPTIVE", "0")
    monkeypatch.setenv("OKPLAN_BROADCAST_THRESHOLD", "1kB")
    with Context("local") as c:
        assert c.session.adaptive is False and c.session.broadcast_threshold == 1024
    with Context("local", adaptive=True, broadcast_threshold="3MB") as c:
        assert c.session.adaptive is True and c.session.broadcast_threshold == 3 * 1024 * 1024
    with pytest.raises(ValueError, match="broadcast_threshold must be a size"):
        Context("local", broadcast_threshold="lots")


def test_fold_is_order_free_only_from_a_neutral_int_zero(local_ctx):
    left, right = _sides(local_ctx)
    values = left.join(right).values().map(lambda vw: vw[0])
    with adaptive(local_ctx, True):
        values.fold(0, add)
        assert _notes(local_ctx, values)
        values2 = left.join(right).values().map(lambda vw: vw[0] % 3 + 1)
        values2.fold(2, mul)
        assert _notes(local_ctx, values2) == []


def test_explain_analyze_golden(local_ctx):
    left = local_ctx.parallelize([(i % 4, i) for i in range(40)], 2).setName("big")
    right = local_ctx.parallelize([(k, -k) for k in range(4)], 2).setName("small")
    joined = left.join(right).values().map(sum)
    with adaptive(local_ctx, True):
        assert joined.sum() == sum(range(40)) - sum(i % 4 for i in range(40))
        text = local_ctx.session.explain(joined._node, analyze=True)
    text = re.sub(r"job \S+: .*", "job", text)
    text = re.sub(r"measured: .*", "measured", text)
    text = re.sub(r"<lambda> at \S+|sum", "f", text)
    text = re.sub(r"broadcast-\d+", "broadcast-N", text)  # the small side, where its job left it
    assert text.splitlines() == [
        "== Physical plan (local), analyzed ==",
        "job",
        "1 stage, 2 tasks, 0 shuffles",
        f"adaptive: join #{joined._node.input.input.nid}: broadcast join, right side 4 records / 65 B "
        "(threshold 10.0 MB)",
        "Stage 0  result  (2 tasks)  datasets: small, big",
        "  measured",
        "  Fused: Values -> Map(f)",
        "  └─ BroadcastHashJoin [join, build right: right side 4 records / 65 B]",
        '     ├─ Parallelize "big" [2 partitions, 40 records]',
        '     └─ Read cached [broadcast-N]',
    ]


def _tasks(ctx, ds) -> list[int]:
    """Tasks per stage of the dataset's latest job."""
    text = ctx.session.explain(ds._node, analyze=True)
    return [int(m) for m in re.findall(r"^Stage \d+ .*?\((\d+) tasks?\)", text, re.M)]


@pytest.mark.parametrize("build", ["reduceByKey", "groupByKey", "join", "distinctMap"])
def test_small_reduce_stages_are_coalesced_where_boundaries_do_not_show(ctx, build):
    data = ctx.parallelize([(i % 37, i) for i in range(3_000)], 4)
    ds = {"reduceByKey": lambda: data.reduceByKey(add, 50),
          "groupByKey": lambda: data.groupByKey(20).mapValues(sorted),
          "join": lambda: data.join(data.mapValues(str), 30).mapValues(lambda vw: vw[0]),
          "distinctMap": lambda: data.keys().distinct(40).map(lambda k: k * 2)}[build]()
    with adaptive(ctx, False):
        expected = ds.collect(), ds.getNumPartitions(), ds.glom().map(len).collect()
    with adaptive(ctx, True):
        assert (ds.collect(), ds.getNumPartitions(), ds.glom().map(len).collect()) == expected
        assert _tasks(ctx, ds)[0] == 1  # the result stage: one task reads every reduce partition
        note = [n for n in _notes(ctx, ds) if "reduce partitions" in n]
        assert note and f"{ds.getNumPartitions()} reduce partitions read by 1 task" in note[0]


def test_no_coalescing_where_partitions_show(local_ctx):
    data = local_ctx.parallelize([(i % 37, i) for i in range(3_000)], 4)
    reduced = data.reduceByKey(add, 50)
    for ds in (reduced.glom(), reduced.mapPartitions(lambda it: [sum(1 for _ in it)]), reduced.zipWithIndex()):
        ds.collect()
        assert _tasks(local_ctx, ds)[0] == 50
    assert len(reduced.take(3)) == 3  # a job on some partitions: planned as written
    big = local_ctx.range(200_000, numSlices=2).map(lambda i: (i, 1)).reduceByKey(add, 8)
    assert big.count() == 200_000
    assert _tasks(local_ctx, big)[0] == 4  # 200,000 records: 4 tasks of at most 65,536 records


def test_map_stages_report_records_per_reduce_partition(ctx):
    from okplan.logical.partitioners import portable_hash

    # 30% of the records on key 0: its reduce partition is the biggest by far (no combining: groupByKey)
    data = ctx.parallelize([(0 if i % 10 < 3 else i, i) for i in range(4_000)], 4)
    grouped = data.groupByKey(8).glom()  # glom: nothing adaptive, every partition as planned
    assert grouped.count() == 8
    stage = next(s for s in ctx.lastJobMetrics().stages.values() if s.kind.startswith("shuffle"))
    assert len(stage.partition_records) == 8 and sum(stage.partition_records) == stage.records_out == 4_000
    biggest, times = stage.partition_skew
    assert biggest == portable_hash(0) % 8 and stage.partition_records[biggest] >= 1_200 and times > 3
    line = [x for x in grouped.toDebugString("metrics").splitlines() if "reduce partitions:" in x]
    assert line and f"biggest: partition {biggest}" in line[0]


def test_a_self_join_computes_its_shared_input_once(ctx):
    seen = ctx.accumulator(0)

    def f(x):
        seen.add(1)
        return (x % 50, x)

    d = ctx.parallelize(range(500), 4).map(f)
    assert d.join(d.mapValues(lambda v: -v)).count() == 500 * 10
    assert seen.value == 500


def test_a_join_of_a_cache_not_yet_filled_computes_it_once(ctx):
    seen = ctx.accumulator(0)

    def f(x):
        seen.add(1)
        return (x % 50, x)

    d = ctx.parallelize(range(500), 4).map(f).cache()
    assert d.join(d.filter(lambda kv: kv[1] < 100)).count() == 500 * 2
    assert seen.value == 500
    d.unpersist()
