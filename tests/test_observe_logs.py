"""Engine logs: a real master's and worker's stderr is JSON lines that carry the job id; the seed's
Logger and the engine share one formatter; the operations side of the CLI (version, one-line errors,
``okplan status``, a warning when Redis is unreachable)."""

from __future__ import annotations

import io
import json
import logging
import subprocess

from cluster_helpers import child_env, free_port, hand_made_cluster, okplan_cmd, redis_server, wait_until

from okplan import Context
from okplan.cli import main
from okplan.log import JsonFormatter, TextFormatter, configure, get_logger


def _reset_engine_logging() -> None:
    logger = logging.getLogger("okplan")
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def _json_lines(path) -> list[dict]:
    text = open(path, encoding="utf-8").read()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_master_and_worker_log_json_lines_that_carry_the_job_and_status_shows_it(tmp_path, capsys, monkeypatch):
    with redis_server() as redis_url, hand_made_cluster(redis_url, workers=1, logs=str(tmp_path),
                                                        master_args=("--log-level", "debug", "--dashboard",
                                                                     "127.0.0.1:0"),
                                                        worker_args=("--log-level", "debug")) as url:
        ctx = Context(url, appName="logged")
        try:
            assert wait_until(lambda: ctx.executor.hello()["workers"] >= 1, 15)
            assert ctx.uiWebUrl and ctx.uiWebUrl.startswith("http://127.0.0.1:")
            with ctx.adapting(False):  # every reduce partition its own task (docs/ADAPTIVE.md): 6 tasks
                assert ctx.parallelize(range(30), 3).map(lambda x: (x % 2, x)).reduceByKey(lambda a, b: a + b) \
                    .collectAsMap() == {0: 210, 1: 225}
            job = ctx.lastJobMetrics().job_id
            assert wait_until(lambda: "job finished" in (tmp_path / "master.log").read_text(), 10)
            # okplan status reads the dashboard's API, finding it through the master (OKPLAN_MASTER)
            monkeypatch.setenv("OKPLAN_MASTER", url)

            def status(*args: str) -> str:
                assert main(["status", *args]) == 0
                return capsys.readouterr().out

            assert wait_until(lambda: f"{job}  done" in status(), 10)  # the view published after the job
            out = status()
            assert "1 workers, 1 slots" in out and f"{job}  done" in out and "logged" in out
            assert len(json.loads(status("--master", url, "--json"))["workers"]) == 1
        finally:
            ctx.stop()
    master = _json_lines(tmp_path / "master.log")  # every line parses
    worker = _json_lines(tmp_path / "worker-0.log")
    for rec in master + worker:
        assert {"time", "level", "name", "hostname", "pid", "msg"} <= set(rec)
        assert "message" not in rec and "logger" not in rec
    about_job = [r for r in master if r.get("job") == job]
    msgs = [r["msg"] for r in about_job]
    assert msgs[0] == "job submitted" and msgs[-1] == "job finished"
    assert {"stage started", "stage finished", "task sent", "task done"} <= set(msgs)
    done = next(r for r in about_job if r["msg"] == "job finished")
    assert done["level"] == "info" and done["app"] == "logged" and done["records"] == 2 and done["tasks"] == 6
    finished = [r for r in about_job if r["msg"] == "stage finished"]
    assert [(r["stage"], r["records_out"]) for r in finished] == [(0, 6), (1, 2)]
    assert any(r["msg"] == "worker joined" and r.get("worker") for r in master)
    tasks = [r for r in worker if r.get("job") == job and r["msg"] == "task done"]
    assert len(tasks) == 6 and all({"stage", "task", "worker"} <= set(r) for r in tasks)


def test_log_level_and_text_format(tmp_path):
    out = io.StringIO()
    configure("warn", "text", stream=out)
    try:
        log = get_logger("okplan.exec.cluster.master")
        log.info("hidden", extra={"job": "j1"})
        log.warning("shown", extra={"job": "j1", "stage": 2})
    finally:
        _reset_engine_logging()
    line = out.getvalue().strip()
    assert "hidden" not in line and " warn " in line and "okplan.master  shown  job=j1 stage=2" in line
    rec = logging.LogRecord("okplan.worker", logging.ERROR, "", 0, "boom", (), None)
    assert json.loads(JsonFormatter().format(rec))["level"] == "error"
    assert "boom" in TextFormatter().format(rec)


def test_cli_version_and_one_line_errors(capsys):
    version = subprocess.run(okplan_cmd("--version"), capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("okplan ")
    for args in (["worker", "--slots", "many"], ["master", "--bogus"], ["nonsense"],
                 ["master", "--dashboard", "nowhere"], ["status", "--master", "tcp://127.0.0.1:1", "--timeout", "0.3"]):
        try:
            code = main(args)
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        _reset_engine_logging()  # main() configured this process's engine logging as a server's
        assert code in (1, 2), args
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)


def test_master_warns_at_start_when_redis_is_unreachable():
    port = free_port()
    proc = subprocess.Popen(okplan_cmd("master", "--bind", "tcp://127.0.0.1:0", "--redis",
                                       f"redis://127.0.0.1:{port}/0", "--no-dashboard"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(child_env(), OKPLAN_SECRET="observe-secret"))
    try:
        assert "listening on" in proc.stdout.readline().decode()
        lines = []
        while not any(r["level"] == "warn" for r in lines):
            lines.append(json.loads(proc.stderr.readline()))
        warning = next(r for r in lines if r["level"] == "warn")
        assert "cannot reach Redis" in warning["msg"] and str(port) in warning["redis"]
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
