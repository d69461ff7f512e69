"""The processes a user (or docker compose) starts by hand: ``okplan master``, ``okplan worker``,
``okplan datasets``; a second client of the same cluster; the shared secret."""

from __future__ import annotations

import subprocess
import time

import pytest
from cluster_helpers import child_env, hand_made_cluster, okplan_cmd, redis_server, wait_until

from okplan import ClusterUnavailableError, Context


def _connect(url: str, **options) -> Context:
    ctx = Context(url, **options)
    assert wait_until(lambda: ctx.executor.hello()["workers"] >= 1, 15)
    return ctx


def test_master_and_worker_started_by_hand_serve_two_clients_and_named_datasets():
    with redis_server() as redis_url, hand_made_cluster(redis_url, workers=2) as url:
        a = _connect(url)
        b = Context(url)
        try:
            words = a.dataSet(["x y", "y z", "z z"], label="words", bufferSize=2)
            assert words.flatMap(str.split).countByValue() == {"x": 1, "y": 2, "z": 3}
            assert "words" in b.listDataSets()
            again = b.dataSet(label="words", fromExisting=True)
            assert again.getNumPartitions() == 2 and again.collect() == ["x y", "y z", "z z"]
            a.parallelize([1, 2, 3], 2).map(lambda x: x * 10).setName("tens").save()
            listed = subprocess.run(okplan_cmd("datasets", "list", "--master", url), capture_output=True,
                                    text=True, env=child_env(), timeout=30)
            assert listed.returncode == 0 and listed.stdout.split() == ["tens", "words"]
            dropped = subprocess.run(okplan_cmd("datasets", "drop", "tens", "--redis", redis_url),
                                     capture_output=True, text=True, env=child_env(), timeout=30)
            assert dropped.returncode == 0, dropped.stderr
            assert a.listDataSets() == ["words"] and b.dropDataSet("words") and a.listDataSets() == []
            with pytest.raises(KeyError, match="words"):
                a.dataSet(label="words", fromExisting=True)
        finally:
            a.stop()
            b.stop()


def test_a_cluster_with_a_secret_refuses_clients_without_it():
    with redis_server() as redis_url, hand_made_cluster(redis_url, secret="s3cret") as url:
        t0 = time.monotonic()
        with pytest.raises(ClusterUnavailableError, match="refused|no okplan master"):
            Context(url, secret="wrong", connect_timeout=2)
        assert time.monotonic() - t0 < 4
        ctx = _connect(url, secret="s3cret")
        try:
            assert ctx.parallelize(range(5), 2).sum() == 10
        finally:
            ctx.stop()


def test_master_refuses_a_public_bind_without_a_secret():
    done = subprocess.run(okplan_cmd("master", "--bind", "tcp://0.0.0.0:0"), capture_output=True, text=True,
                          env=child_env(), timeout=30)
    assert done.returncode == 2 and "shared secret" in done.stderr


def test_cli_help_lists_the_commands():
    done = subprocess.run(okplan_cmd("--help"), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    for command in ("master", "worker", "local-cluster", "datasets", "run"):
        assert command in done.stdout


def test_okplan_run_runs_a_script(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("import sys\nfrom okplan import Context\n"
                      "print(Context().parallelize(range(int(sys.argv[1]))).sum())\n")
    done = subprocess.run(okplan_cmd("run", str(script), "5"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "10", done.stderr


def test_the_compose_services_commands_run_by_hand():
    """docker/compose.yaml's commands and environment (seed REDIS_HOST/REDIS_PORT, OKPLAN_SECRET, a
    worker with two slots), on 127.0.0.1 instead of the compose network."""
    import yaml

    with open("docker/compose.yaml") as f:
        services = yaml.safe_load(f)["services"]
    assert {"redis", "master", "worker"} <= set(services)
    with redis_server() as redis_url:
        env = child_env()
        env.update(OKPLAN_SECRET="compose-secret", REDIS_HOST="127.0.0.1", REDIS_PORT=redis_url.split(":")[-1][:-2])
        master_cmd = [a.replace("0.0.0.0:7077", "127.0.0.1:0") for a in services["master"]["command"]]
        master = subprocess.Popen(okplan_cmd(*master_cmd), stdout=subprocess.PIPE, env=env)
        procs = [master]
        try:
            url = master.stdout.readline().decode().split("listening on ")[1].split()[0]
            worker_cmd = [url if a == "tcp://master:7077" else "2" if a == "1" else a
                          for a in services["worker"]["command"]]
            procs.append(subprocess.Popen(okplan_cmd(*worker_cmd), env=env))
            ctx = _connect(url, secret="compose-secret")
            try:
                assert wait_until(lambda: ctx.executor.hello()["slots"] == 2, 15)
                assert ctx.parallelize(range(100), 4).map(lambda x: (x % 3, 1)).reduceByKey(lambda a, b: a + b) \
                    .collectAsMap() == {0: 34, 1: 33, 2: 33}
                assert len(ctx.lastJobMetrics().tasks_per_worker) == 2
            finally:
                ctx.stop()
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(10)
