"""The master's web dashboard: its JSON API, its token when bound beyond loopback, and the page as a real
browser (headless Chromium) renders it: the workers and the finished job with its stages."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request
from operator import add

import pytest
from cluster_helpers import child_env, okplan_cmd, redis_server, wait_until

from okplan import Context
from okplan.exec.cluster.dashboard import dashboard_token

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def _shows_done(url: str, job_id: str) -> bool:
    """The dashboard's view (published every tick) has caught up with the job's end."""
    return any(j["id"] == job_id and j["state"] == "done" for j in _get(url + "api/status")["jobs"])


@pytest.fixture(scope="module")
def dashboard_job():
    """A local cluster that ran one labelled job; (context, job id, its result)."""
    ctx = Context("local-cluster[2]", appName="dash-demo")
    try:
        lines = ctx.parallelize(["a b a c", "b c d"] * 100, 4).setName("lines")
        counts = lines.flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(add, 3).setName("counts")
        result = counts.collectAsMap()
        yield ctx, ctx.lastJobMetrics().job_id, result
    finally:
        ctx.stop()


def test_api_shows_workers_and_the_finished_job(dashboard_job):
    ctx, job_id, result = dashboard_job
    assert result == {"a": 200, "b": 200, "c": 200, "d": 100}
    url = ctx.uiWebUrl
    assert url and url.startswith("http://127.0.0.1:") and url.endswith("/")
    # the local cluster's servers log at this process's engine level (warn unless LOG_LEVEL says more)
    master_cmd = " ".join(ctx.executor.children.master.args)
    assert f"--log-level {ctx.executor.log_level}" in master_cmd and "--dashboard 127.0.0.1:0" in master_cmd
    assert wait_until(lambda: _shows_done(url, job_id), 10)
    view = _get(url + "api/status")
    assert len(view["workers"]) == 2 and view["slots"] == 2
    assert sum(w["tasks_done"] for w in view["workers"]) == 7
    job = _get(f"{url}api/jobs/{job_id}")
    assert (job["state"], job["app"], job["tasks"], job["done"]) == ("done", "dash-demo", 7, 7)
    assert job["labels"] == ["counts", "lines"]
    map_stage, result_stage = job["stages"]
    assert (map_stage["kind"], map_stage["records_in"], map_stage["tasks"]) == ("shuffle map", 200, 4)
    assert map_stage["records_out"] == result_stage["records_in"] and result_stage["records_out"] == 4
    assert map_stage["bytes_compressed"] > 0 and any("FlatMap(str.split)" in op for op in map_stage["ops"])
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{url}api/jobs/nope", timeout=10)
    assert missing.value.code == 404


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium to render the dashboard in (apt-get install chromium)")
def test_the_page_in_a_real_browser_shows_workers_and_the_finished_job(dashboard_job, tmp_path):
    ctx, job_id, _ = dashboard_job
    assert wait_until(lambda: _shows_done(ctx.uiWebUrl, job_id), 10)
    workers = [w["name"] for w in _get(ctx.uiWebUrl + "api/status")["workers"]]
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        f"--user-data-dir={tmp_path}", "--virtual-time-budget=5000", "--dump-dom", ctx.uiWebUrl],
                       capture_output=True, text=True, timeout=120)
    dom = r.stdout
    assert r.returncode == 0 and "<table" in dom, r.stderr[-2000:]
    for name in workers:
        assert name in dom
    assert f'data-job="{job_id}"' in dom and 'class="state done"' in dom and "dash-demo" in dom
    assert "counts, lines" in dom and "Stage 0 · shuffle map · 4 tasks" in dom and "FlatMap(str.split)" in dom


def test_a_dashboard_beyond_loopback_needs_the_secret():
    env = child_env()
    with redis_server() as redis_url:
        refused = subprocess.run(okplan_cmd("master", "--bind", "tcp://127.0.0.1:0", "--redis", redis_url,
                                            "--dashboard", "0.0.0.0:0"), capture_output=True, text=True,
                                 timeout=60, env=env)
        assert refused.returncode == 2 and "without a shared secret" in refused.stderr
        master = subprocess.Popen(okplan_cmd("master", "--bind", "tcp://127.0.0.1:0", "--redis", redis_url,
                                             "--dashboard", "0.0.0.0:0", "--secret", "s3cret"),
                                  stdout=subprocess.PIPE, env=env)
        try:
            line = master.stdout.readline().decode()
            url = line.split("dashboard ")[1].strip().rstrip(")")
            token = dashboard_token(b"s3cret")
            assert url.endswith(f"/?token={token}")
            port = url.split(":")[2].split("/")[0]
            local = f"http://127.0.0.1:{port}/api/status"
            with pytest.raises(urllib.error.HTTPError) as denied:
                urllib.request.urlopen(local, timeout=10)
            assert denied.value.code == 403
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(local + "?token=wrong", timeout=10)
            assert _get(f"{local}?token={token}")["workers"] == []
        finally:
            master.terminate()
            master.wait(10)
            master.stdout.close()
