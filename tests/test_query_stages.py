"""Adaptive query stages (okplan/query_stages.py): a job's map stages run first, and the stages reading
them are re-planned from measured sizes: skewed join partitions split, small partitions coalesced,
sides of unknown size broadcast. Answers, order where it shows, partition counts and user function
calls stay those of adaptive planning off, on every executor."""

from __future__ import annotations

import contextlib
import re
from operator import add

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okplan import Context
from okplan.query_stages import (DEFAULT_SKEW_FACTOR, DEFAULT_SKEW_THRESHOLD, MapOutput, Settings, _coalesced,
                                 skew_factor, skew_threshold)


@contextlib.contextmanager
def tuned(ctx, on: bool = True, broadcast: int | None = None, factor: float | None = None,
          threshold: int | None = None):
    """Adaptive planning on or off, with its thresholds, for a block; then as before."""
    s = ctx.session
    saved = s.adaptive, s.broadcast_threshold, s.skew_factor, s.skew_threshold
    s.adaptive = on
    s.broadcast_threshold = s.broadcast_threshold if broadcast is None else broadcast
    s.skew_factor = s.skew_factor if factor is None else factor
    s.skew_threshold = s.skew_threshold if threshold is None else threshold
    try:
        yield
    finally:
        s.adaptive, s.broadcast_threshold, s.skew_factor, s.skew_threshold = saved


def _notes(ctx, ds) -> list[str]:
    return [line for line in ctx.session.explain(ds._node, analyze=True).splitlines() if line.startswith("adaptive:")]


def _skewed(ctx, n=4_000, hot=0.4, parts=4):
    """``n`` left pairs, ``hot`` of them on key 0; a right side with one record per key of unknown size
    (flatMap), too big to broadcast under the thresholds the tests set."""
    left = ctx.parallelize([(0, i) if i % 100 < hot * 100 else (i % 500, i) for i in range(n)], parts)
    right = ctx.parallelize(range(500), 2).flatMap(lambda k: [(k, k * 3)])
    return left, right


def _run_all(ds):
    return ds.collect(), ds.count(), ds.map(lambda kv: kv[0]).sum(), ds.getNumPartitions()


@pytest.mark.parametrize("how", ["join", "leftOuterJoin", "rightOuterJoin"])
def test_a_skewed_partition_is_split_and_answers_stay_exact(ctx, how):
    left, right = _skewed(ctx)
    a, b = (left, right) if how != "rightOuterJoin" else (right, left)
    joined = getattr(a, how)(b, 8)
    values = joined.values()
    with tuned(ctx, False):
        expected = _run_all(joined), values.count()
    with tuned(ctx, True, broadcast=0, threshold=1_000):
        got = _run_all(joined), values.count()
        notes = _notes(ctx, values)  # count(): order-free, so either side may be split
    assert got == expected
    splits = [n for n in notes if "split partition 0" in n]
    assert splits, notes
    side = "right" if how == "rightOuterJoin" else "left"
    assert f"({side} side)" in splits[0]
    assert re.search(r"split partition 0 \([\d,]+ records, .*, \d+\.\dx median\) into \d+ tasks", splits[0])


def test_collect_splits_only_the_streamed_side_and_keeps_the_order(ctx):
    left, right = _skewed(ctx)
    joined = right.join(left, 8)   # skew on the right (built) side: collect shows order, so it stays
    with tuned(ctx, False):
        expected = joined.collect()
    with tuned(ctx, True, broadcast=0, threshold=1_000):
        assert joined.collect() == expected
        assert not any("split" in n for n in _notes(ctx, joined))
        flipped = left.join(right, 8)
        with tuned(ctx, False):
            expected = flipped.collect()
        assert flipped.collect() == expected
        assert any("split partition 0" in n and "(left side)" in n for n in _notes(ctx, flipped))


def test_skew_thresholds_decide(local_ctx):
    left, right = _skewed(local_ctx, hot=0.4)
    joined = left.join(right, 8).values()
    # the hot partition holds about 1,600 + 300 records against about 300 for the others: ~6x
    for factor, threshold, split in [(5.0, 1_000, True), (8.0, 1_000, False), (5.0, 10 ** 9, False)]:
        with tuned(local_ctx, True, broadcast=0, factor=factor, threshold=threshold):
            assert joined.count() == 4_000
            assert any("split partition" in n for n in _notes(local_ctx, joined)) == split, (factor, threshold)


def test_functions_run_once_with_query_stages(ctx):
    seen = ctx.accumulator(0)

    def f(kv):
        seen.add(1)
        return kv

    left, right = _skewed(ctx)
    with tuned(ctx, True, broadcast=0, threshold=1_000):
        assert left.map(f).join(right.map(f), 8).count() == 4_000
    assert seen.value == 4_000 + 500


@pytest.mark.parametrize("threshold", [10 * 1024 * 1024, 100])
def test_a_side_of_unknown_size_is_broadcast_when_it_turns_out_small(ctx, threshold):
    seen = ctx.accumulator(0)

    def spread(k):
        seen.add(1)
        return [(k, k * 3)]

    def build():
        left = ctx.parallelize([(i % 500, i) for i in range(3_000)], 4)
        right = ctx.parallelize(range(500), 2).flatMap(spread).filter(lambda kv: kv[0] < 50)
        # leftOuterJoin builds the right side only (an inner join would broadcast the left side, whose
        # size the plan knows)
        return left.leftOuterJoin(right, 6).values().map(lambda vw: vw[0] + (vw[1] or 0))

    with tuned(ctx, False):
        joined = build()   # a dataset of its own: the next one must not reuse its shuffles
        expected = joined.sum(), joined.getNumPartitions()
    with tuned(ctx, True, broadcast=threshold):
        joined = build()
        assert (joined.sum(), joined.getNumPartitions()) == expected
        notes = _notes(ctx, joined)
    assert seen.value == 1_000   # once with adaptive planning off, once on: never twice in a job
    if threshold > 100:
        assert any("broadcast join, right side 50 records" in n and "measured after its map stage" in n
                   for n in notes), notes
        assert "BroadcastHashJoin" in ctx.session.explain(joined._node, analyze=True)
    else:
        assert any("shuffle join kept, right side 50 records" in n and "measured over" in n for n in notes), notes


def test_a_text_file_side_is_broadcast_at_run_time(ctx, tmp_path):
    path = tmp_path / "small.txt"
    path.write_text("".join(f"{k},{k * 7}\n" for k in range(40)))
    def build():
        left = ctx.parallelize([(i % 80, i) for i in range(2_000)], 4)
        right = ctx.textFile(str(path), 2).map(lambda line: tuple(map(int, line.split(","))))
        return left.leftOuterJoin(right).values().map(lambda vw: vw[0] * (vw[1] or 1))

    with tuned(ctx, False):
        expected = build().sum()
    with tuned(ctx, True):
        joined = build()
        assert joined.sum() == expected
        assert any("broadcast join, right side 40 records" in n for n in _notes(ctx, joined))


def test_many_small_reduce_partitions_are_coalesced_by_measured_size(ctx):
    words = ctx.parallelize(["a b c", "b c d", "e"] * 100, 4).flatMap(str.split).map(lambda w: (w, 1))
    counts = words.reduceByKey(add, 32)
    with tuned(ctx, False):
        expected = counts.collect(), counts.getNumPartitions(), counts.glom().map(len).collect()
    with tuned(ctx, True):
        got = counts.collect(), counts.getNumPartitions(), counts.glom().map(len).collect()
        counts.collect()
        notes = _notes(ctx, counts)
    assert got == expected
    assert any("32 reduce partitions read by 1 task, by measured sizes (20 records" in n for n in notes), notes


def test_query_stages_reuse_a_shared_side_only_when_it_runs_once(ctx):
    seen = ctx.accumulator(0)

    def f(kv):
        seen.add(1)
        return kv

    pairs = ctx.parallelize(range(200), 4).flatMap(lambda x: [(x % 10, x)]).map(f)
    with tuned(ctx, True, threshold=1):
        assert pairs.join(pairs, 16).count() == 20 * 200
    assert seen.value == 200


def test_skew_settings(monkeypatch):
    assert skew_factor(None) == DEFAULT_SKEW_FACTOR and skew_threshold(None) == DEFAULT_SKEW_THRESHOLD
    monkeypatch.setenv("OKPLAN_SKEW_FACTOR", "3")
    monkeypatch.setenv("OKPLAN_SKEW_THRESHOLD", "2MB")
    with Context("local") as c:
        assert c.session.skew_factor == 3.0 and c.session.skew_threshold == 2 * 1024 * 1024
    with Context("local", skew_factor=10, skew_threshold="64kB") as c:
        assert c.session.skew_factor == 10.0 and c.session.skew_threshold == 65536
    with pytest.raises(ValueError, match="skew_factor .* must be a number >= 1"):
        Context("local", skew_factor=0.5)
    with pytest.raises(ValueError, match="skew_threshold must be a size"):
        Context("local", skew_threshold="big")


def test_coalescing_keeps_split_slices_alone():
    sizes = [(10, 10), (10, 10), (70_000, 100), (70_000, 100), (5, 5), (5, 5)]
    assert _coalesced(sizes, alone={2, 3}) == [(0, 1), (2,), (3,), (4, 5)]
    assert _coalesced([(40_000, 1)] * 3, alone=set()) == [(0,), (1,), (2,)]
    assert Settings(1).skew_factor == DEFAULT_SKEW_FACTOR
    assert MapOutput(("k", 1, 4), (1,), (2,)).maps == 4


def test_explain_analyze_golden_for_a_split_join(ctx):
    left = ctx.parallelize([(0, i) if i % 2 else (i % 40, i) for i in range(400)], 4).setName("big")
    right = ctx.parallelize(range(40), 2).flatMap(lambda k: [(k, -k)]).setName("keys")
    joined = left.join(right, 4).values().map(sum)
    with tuned(ctx, True, broadcast=0, threshold=100):
        assert joined.count() == 400
        text = ctx.session.explain(joined._node, analyze=True)
    # what differs by executor: its name, bytes in Redis, time per phase, where local[N] ran each stage
    text = "\n".join(line for line in text.splitlines() if not line.startswith(("  bytes:", "  time:", "ran stage")))
    text = text.replace(f"({ctx.executor.name})", "(local)")
    text = re.sub(r"job \S+: .*", "job", text)
    text = re.sub(r"\(job \w+", "(job J", text)
    text = re.sub(r"measured: .*", "measured", text)
    text = re.sub(r"reduce partitions: .*", "reduce partitions", text)
    text = re.sub(r"<lambda> at [\w.]+:\d+|sum", "f", text)
    nid = joined._node.input.input.nid
    assert text.splitlines() == [
        "== Physical plan (local), analyzed ==",
        "job",
        "3 stages, 11 tasks, 2 shuffles",
        f"adaptive: join #{nid}: split partition 0 (300 records, 2.1 KB, 6.0x median) into 4 tasks (left side)",
        f"adaptive: join #{nid}: 7 tasks coalesced into 5 by measured sizes",
        "Stage 2  result  (5 tasks)  <- reads stage 0, 1",
        "  measured",
        "  Fused: Values -> Map(f)",
        "  └─ Coalesce [7 -> 5 partitions, no shuffle]",
        "     └─ HashJoin [join, build right]",
        "        ├─ ShuffleRead [shuffle 0, 7 tasks over 4 partitions (skew split)]",
        "        └─ ShuffleRead [shuffle 1, 7 tasks over 4 partitions (skew split)]",
        "Stage 1  shuffle map -> writes shuffle 1, hash(4)  (2 tasks)  datasets: keys",
        "  measured",
        "  reduce partitions",
        "  ran first: adaptive query stage (job J, below)",
        "Stage 0  shuffle map -> writes shuffle 0, hash(4)  (4 tasks)  datasets: big",
        "  measured",
        "  reduce partitions",
        "  ran first: adaptive query stage (job J, below)",
        "",
        "== Ran first: adaptive query stage (job J) ==",
        "2 stages, 6 tasks, 2 shuffles",
        "Stage 1  shuffle map -> writes shuffle 1, hash(4)  (2 tasks)  datasets: keys",
        "  measured",
        "  reduce partitions",
        "  Fused: FlatMap(f)",
        "  └─ Range(0, 40, 1) [2 partitions]",
        "Stage 0  shuffle map -> writes shuffle 0, hash(4)  (4 tasks)  datasets: big",
        "  measured",
        "  reduce partitions",
        '  Parallelize "big" [4 partitions, 400 records]',
    ]


JOIN_KINDS = ["join", "leftOuterJoin", "rightOuterJoin", "fullOuterJoin"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hot=st.integers(0, 90), keys=st.integers(1, 30), n=st.integers(0, 300), parts=st.integers(1, 5),
       reduces=st.sampled_from([2, 5, 17]), how=st.sampled_from(JOIN_KINDS),
       action=st.sampled_from(["collect", "count", "sum"]), broadcast=st.sampled_from([0, 200, 10 ** 7]),
       factor=st.sampled_from([1.0, 2.0, 5.0]))
def test_skew_and_runtime_decisions_keep_answers_exact(ctx, hot, keys, n, parts, reduces, how, action, broadcast,
                                                      factor):
    left = ctx.parallelize([(0, i) if i % 100 < hot else (i % keys, i) for i in range(n)], parts)
    right = ctx.parallelize(range(keys + 3), 2).flatMap(lambda k: [(k, -k)] * (k % 2 + 1))
    joined = getattr(left, how)(right, reduces)
    run = {"collect": lambda d: d.collect(), "count": lambda d: d.count(),
           "sum": lambda d: d.map(lambda kv: (kv[1][0] or 0) + (kv[1][1] or 0)).sum()}[action]
    # adaptive first: its map stages run fresh (the run without reuses what it kept, with no decision)
    with tuned(ctx, True, broadcast=broadcast, factor=factor, threshold=1):
        got = run(joined), joined.getNumPartitions()
    with tuned(ctx, False):
        assert (run(joined), joined.getNumPartitions()) == got


def test_shuffles_run_first_stay_reusable_by_later_jobs(ctx):
    seen_f, seen_g = ctx.accumulator(0), ctx.accumulator(0)

    def f(x):
        seen_f.add(1)
        return (x % 10, x)

    def g(x):
        seen_g.add(1)
        return [(x % 10, -x)]

    counts = ctx.parallelize(range(1_000), 4).map(f).reduceByKey(add, 4)          # size known: plan time
    unknown = ctx.parallelize(range(500), 4).flatMap(g).reduceByKey(add, 4)     # size unknown: run time
    assert counts.join(unknown, 3).count() == 10
    assert counts.leftOuterJoin(unknown, 5).count() == 10
    assert sorted(counts.collect()) == sorted(ctx.parallelize(range(1_000)).map(lambda x: (x % 10, x))
                                              .reduceByKey(add).collect())
    assert unknown.count() == 10 and len(unknown.collect()) == 10
    assert (seen_f.value, seen_g.value) == (1_000, 500)


def test_outputs_run_first_are_kept_whatever_the_budget(ctx):
    """A budget that keeps nothing for reuse (and, locally, spills every task) still keeps what a job
    ran first until the job ends: nothing runs twice, and nothing stays pinned after."""
    executor = ctx.executor
    budget = "kept_budget" if hasattr(executor, "kept_budget") else "task_memory"
    saved = getattr(executor, budget)
    seen = ctx.accumulator(0)

    def f(kv):
        seen.add(1)
        return kv

    setattr(executor, budget, 1 if budget == "kept_budget" else 4096)
    try:
        left, right = _skewed(ctx)
        with tuned(ctx, True, broadcast=0, threshold=1_000):
            joined = left.map(f).join(right, 8)
            assert joined.count() == 4_000
            assert any("split partition 0" in n for n in _notes(ctx, joined))
    finally:
        setattr(executor, budget, saved)
    assert seen.value == 4_000
    assert not executor.pinned
    with tuned(ctx, False):
        assert left.join(right, 8).count() == 4_000


def test_an_error_in_a_stage_run_first_reaches_the_caller_and_unpins(ctx):
    def bad(k):
        if k == 7:
            raise ValueError("bad key 7")
        return [(k, k)]

    left = ctx.parallelize([(i % 10, i) for i in range(100)], 4)
    right = ctx.parallelize(range(10), 2).flatMap(bad)   # size unknown: its map stage runs first
    with pytest.raises(ValueError, match="bad key 7") as info:
        left.leftOuterJoin(right, 4).count()
    assert any("in FlatMap(" in note and "bad)" in note for note in getattr(info.value, "__notes__", ()))
    assert not ctx.executor.pinned
    assert left.leftOuterJoin(left, 4).count() == 1_000
