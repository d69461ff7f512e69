"""Metrics that add up, on every executor: what a result stage says is what the action saw, a map stage's
records out are its shuffle reader's records in, task counts are partition counts; explain(analyze=True)
shows those figures; the sampled operator profile names the slow operator."""

from __future__ import annotations

import time
from operator import add

import pytest

from okplan import Context


def test_result_stage_counts_what_the_action_consumed(ctx):
    assert len(ctx.range(100, numSlices=4).filter(lambda x: x % 3 == 0).collect()) == 34
    m = ctx.lastJobMetrics()
    (stage,) = m.stages.values()
    assert (stage.kind, stage.tasks, stage.records_in, stage.records_out) == ("result", 4, 100, 34)
    assert ctx.range(100, numSlices=4).filter(lambda x: x % 3 == 0).sum() == sum(range(0, 100, 3))
    (stage,) = ctx.lastJobMetrics().stages.values()
    assert stage.records_out == 34  # an action without a cheap count (sum) is counted as it consumes


def test_map_stage_records_out_equal_shuffle_reader_records_in(ctx):
    words = ctx.parallelize(["a b a c", "b d", "e a"] * 50, 3).flatMap(str.split)
    assert words.map(lambda w: (w, 1)).groupByKey(4).mapValues(len).collectAsMap() == {
        "a": 150, "b": 100, "c": 50, "d": 50, "e": 50}
    m = ctx.lastJobMetrics()
    stages = sorted(m.stages.values(), key=lambda s: s.stage_id)
    map_stage, result = stages
    assert map_stage.kind == "shuffle map" and result.kind == "result"
    assert (map_stage.tasks, result.tasks) == (3, 4)
    assert map_stage.records_in == 150 and map_stage.records_out == 400 == result.records_in
    assert result.records_out == 5
    assert m.records_shuffled == 400
    for s in stages:
        assert 0 < s.seconds <= m.seconds
        assert s.task_seconds_max >= s.task_seconds_median > 0 and s.skew >= 1.0
        assert s.cpu_seconds > 0


def test_take_counts_what_it_took(local_ctx):
    # (a cluster cancels the job once take has enough, and a cancelled job reports no figures)
    assert local_ctx.range(1000, numSlices=4).take(3) == [0, 1, 2]
    (stage,) = local_ctx.lastJobMetrics().stages.values()
    assert stage.records_out == 3 and stage.tasks == 1


def test_explain_analyze_shows_the_figures(ctx):
    ds = ctx.range(100, numSlices=2).filter(lambda x: x % 3 == 0).map(lambda x: (x % 2, x)).reduceByKey(add, 3)
    text = ds.toDebugString(analyze=True)  # not run yet: analyze runs it
    # the map stage combines per key before the shuffle: 34 records pass the filter, 4 leave the stage
    assert "analyzed" in text and "measured: 2 tasks, 100 records in, 4 out" in text
    assert "measured: 3 tasks, 4 records in, 2 out" in text
    m = ctx.lastJobMetrics()
    assert f"job {m.job_id}" in text
    with ctx.adapting(False):  # else collect() reads the 3 reduce partitions with one task (docs/ADAPTIVE.md)
        assert ds.collectAsMap() == {0: sum(range(0, 100, 6)), 1: sum(range(3, 100, 6))}
    again = ds.toDebugString("metrics")  # the synonym; shows the job that just ran, runs nothing
    assert ctx.lastJobMetrics().job_id in again and "3 tasks, 4 records in, 2 out" in again


def test_explain_analyze_prints(ctx, capsys):
    ctx.parallelize([1, 2, 3], 3).map(str).explain(analyze=True)
    out = capsys.readouterr().out
    assert out.startswith("== Physical plan") and "measured: 3 tasks, 3 records in, 3 out" in out


def _slow(x):
    t = time.perf_counter() + 0.004
    while time.perf_counter() < t:
        pass
    return x


@pytest.mark.parametrize("profile", [True, False])
def test_profile_names_the_slow_operator(ctx, profile):
    saved = ctx.executor.profile
    ctx.executor.profile = profile
    try:
        ds = ctx.range(40, numSlices=2).map(_slow).map(lambda x: (x % 2, x)).reduceByKey(add)
        assert ds.collectAsMap() == {0: sum(range(0, 40, 2)), 1: sum(range(1, 40, 2))}
        m = ctx.lastJobMetrics()
    finally:
        ctx.executor.profile = saved
    map_stage = next(s for s in m.stages.values() if s.kind == "shuffle map")
    if not profile:
        assert map_stage.operators == {}
        return
    top = max(map_stage.operators, key=map_stage.operators.get)
    assert top == "Map(_slow)" and map_stage.operators[top] > 0.05
    assert "top operators: Map(_slow)" in ds.toDebugString(analyze=True)
    assert ds.getProfile()["stages"][map_stage.stage_id]["operators"]["Map(_slow)"] > 0


def test_profile_switch_of_the_context(monkeypatch):
    monkeypatch.setenv("OKPLAN_PROFILE", "1")
    with Context() as on:
        assert on.executor.profile
    with Context(profile=False) as off:
        assert not off.executor.profile


def test_default_master_from_OKPLAN_MASTER(monkeypatch):
    monkeypatch.setenv("OKPLAN_MASTER", "local[3]")
    with Context() as ctx:
        assert ctx.master == "local[3]" and ctx.defaultParallelism == 3 and ctx.uiWebUrl is None
