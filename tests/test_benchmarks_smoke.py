"""The benchmark harness at a tiny size: every workload runs, every answer checks out against plain
Python, the tables render and the JSON is complete. Correctness of the harness only: no timing asserts."""

from __future__ import annotations

import json
import os

import pytest

from benchmarks.cli import main, parse_args, render, run_suite
from benchmarks.engines import NOREUSE_WORKLOADS
from benchmarks.report import job_totals
from benchmarks.workloads import WORKLOADS

ENGINES = os.environ.get("OKPLAN_BENCH_SMOKE_ENGINES", "python,okplan-local,okplan-local-nopt,okplan-local-noreuse")


@pytest.fixture(scope="module")
def payload():
    args = parse_args(["--size", "smoke", "--engines", ENGINES, "--repeat", "1", "--warmup", "0",
                       "--no-micro", "--quiet"])
    return run_suite(args)


def test_every_workload_runs_and_checks_out(payload):
    engines = [e for e in ENGINES.split(",") if payload["engines"][e]["available"]]
    cells = {(r["workload"], r["engine"]): r for r in payload["results"]}
    for wl in WORKLOADS:
        for eng in engines:
            r = cells[(wl, eng)]
            if wl not in NOREUSE_WORKLOADS.get(eng, (wl,)):
                assert r["status"] == "skipped"    # engines without reuse run only the workloads it matters for
                continue
            assert r["status"] == "ok", (wl, eng, r["note"])
            assert r["samples"] and r["median"] is not None


def test_okplan_runs_carry_stage_metrics(payload):
    for r in payload["results"]:
        if r["engine"].startswith("okplan") and r["status"] == "ok":
            assert r["jobs"], r["workload"]
            for job in r["jobs"]:
                for st in job["stages"].values():
                    assert st["tasks"] >= 1 and st["records_in"] >= 0


def test_optimizer_table_compares_on_and_off(payload):
    rows = {r["workload"]: r for r in payload["optimizer"]}
    assert set(rows) == set(WORKLOADS)
    # combiner lifting: wordcount shuffles fewer records with the optimizer on
    assert rows["wordcount"]["on"]["records_shuffled"] < rows["wordcount"]["off"]["records_shuffled"]


def test_reuse_table_compares_on_and_off(payload):
    if not payload["engines"].get("okplan-local-noreuse", {}).get("available"):
        pytest.skip("okplan-local-noreuse not in OKPLAN_BENCH_SMOKE_ENGINES")
    rows = {r["workload"]: r for r in payload["reuse"] if r["engine"] == "okplan-local"}
    assert set(rows) == set(NOREUSE_WORKLOADS["okplan-local-noreuse"])
    # the notebook's five actions skip the map stage four times with reuse
    assert rows["notebook"]["tasks_on"] < rows["notebook"]["tasks_off"]


def test_render_prints_every_section(payload):
    text = render(payload)
    reuse = ("## Shuffle reuse on / off",) if payload["reuse"] else ()
    for heading in ("## Workloads", "## okplan per stage", "## Optimizer on / off", *reuse):
        assert heading in text


def test_job_totals_counts_shuffle_stages():
    jobs = [{"stages": {"0": {"kind": "shuffle map", "tasks": 2, "records_out": 5, "bytes_raw": 0,
                              "bytes_compressed": 0},
                        "1": {"kind": "result", "tasks": 2, "records_out": 0, "bytes_raw": 0,
                              "bytes_compressed": 0}}}]
    assert job_totals(jobs) == {"jobs": 1, "stages": 2, "shuffles": 1, "tasks": 4, "records_shuffled": 5,
                                "bytes_shuffled": 0}


def test_main_writes_json(tmp_path, capsys):
    code = main(["--size", "smoke", "--engines", "python,okplan-local", "--workloads", "pipeline,tiny",
                 "--repeat", "1", "--warmup", "0", "--no-micro", "--no-chart", "--quiet", "--out", str(tmp_path)])
    assert code == 0
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert {"machine", "versions", "args", "engines", "results", "optimizer", "micro"} <= set(data)
    assert "## Workloads" in capsys.readouterr().out


def test_a_wrong_engine_is_caught(monkeypatch):
    import dataclasses

    from benchmarks import workloads

    broken = dataclasses.replace(workloads.WORKLOADS["pipeline"], rdd=lambda sc, n, parts: -1)
    monkeypatch.setitem(workloads.WORKLOADS, "pipeline", broken)
    args = parse_args(["--size", "smoke", "--engines", "python,okplan-local", "--workloads", "pipeline",
                       "--repeat", "1", "--warmup", "0", "--no-micro", "--quiet"])
    result = {r["engine"]: r for r in run_suite(args)["results"]}
    assert result["okplan-local"]["status"] == "wrong"


def test_files_section_reads_and_writes(payload):
    rows = payload["files"]
    jobs = {(r["engine"], r["job"]) for r in rows}
    assert ("python", "wordcount text") in jobs and ("okplan-local", "wordcount gzip-4") in jobs
    assert ("okplan-local", "textFile -> saveAsTextFile (copy)") in jobs
    assert all(r["status"] == "ok" for r in rows), rows
    assert "## Files" in render(payload)


def test_the_memory_section_runs_a_case_and_renders():
    from benchmarks import memory

    rows = [memory.run_case("groupByKey", 20_000, "local", b) for b in (memory.IN_MEMORY, "1k")]
    assert all(r["ok"] for r in rows)
    assert rows[0]["spill_bytes"] == 0 and rows[1]["spill_bytes"] > 0
    text = memory.section_table(rows)
    assert "groupByKey" in text and "in memory" in text and "1k" in text
