"""The processes a user (or docker compose) starts by hand: ``okplan master``, ``okplan worker``,
``okplan datasets``; a second client of the same cluster; the shared secret."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest
from cluster_helpers import (child_env, free_port, hand_made_cluster, okplan_cmd, redis_server, stop_processes,
                             wait_until)

from okplan.exec.cluster.launcher import redis_server_binary

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
                                    text=True, env=child_env(),
                                    timeout=30)
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


def _compose_value(text: str, env: dict[str, str]) -> str:
    """What docker compose makes of a value: ``${VAR:?msg}``, ``${VAR:-default}``, ``$$`` -> ``$``."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name, "")
        if op == ":?" and not value:
            raise AssertionError(f"compose would refuse to start: {arg}")
        return value or (arg if op == ":-" else "")
    return re.sub(r"\$\$|\$\{(\w+)(?:(:[?-])([^}]*))?\}", sub, text)


def test_the_compose_services_commands_run_by_hand(tmp_path):
    """docker/compose.yaml's three services and their healthchecks, run as processes on 127.0.0.1 with
    the compose environment (OKPLAN_SECRET, OKPLAN_REDIS_PASSWORD, seed REDIS_HOST/REDIS_PORT): Redis
    from its stdin configuration, with a password, noeviction and an append-only file that keeps a named
    dataset across a restart."""
    import yaml

    with open("docker/compose.yaml") as f:
        compose = yaml.safe_load(f)
    services = compose["services"]
    assert set(services) == {"redis", "master", "worker"}
    assert all("healthcheck" in svc for svc in services.values())
    user_env = dict(child_env(), OKPLAN_SECRET="compose-secret", OKPLAN_REDIS_PASSWORD="compose-redis-pw")
    port = free_port()
    # the compose network's names and the container's paths, as this machine has them
    local = {"port 6379": f"port {port}\nbind 127.0.0.1", "-p 6379": f"-p {port}", "dir /data": f"dir {tmp_path}"}
    redis_bin = os.path.dirname(redis_server_binary())

    def service_env(name: str, **extra: str) -> dict[str, str]:
        env = dict(user_env, PATH=os.pathsep.join([redis_bin, os.environ["PATH"]]), **extra)
        env.update({k: _compose_value(str(v), user_env) for k, v in services[name].get("environment", {}).items()})
        if env.get("REDIS_HOST") == "redis":
            env.update(REDIS_HOST="127.0.0.1", REDIS_PORT=str(port))
        return env

    def localize(arg: str, master_url: str = "") -> str:
        arg = _compose_value(arg, user_env)
        for compose_text, here in {**local, "tcp://0.0.0.0:7077": "tcp://127.0.0.1:0",
                                   "tcp://master:7077": master_url, "tcp://127.0.0.1:7077": master_url}.items():
            arg = arg.replace(compose_text, here)
        return arg

    def healthy(name: str, master_url: str = "") -> bool:
        test = services[name]["healthcheck"]["test"]
        argv = ["sh", "-c", localize(test[1], master_url)] if test[0] == "CMD-SHELL" else \
            [localize(a, master_url) for a in test[1:]]
        if argv[0] == "okplan":
            argv = okplan_cmd(*argv[1:])
        return subprocess.run(argv, env=service_env(name), capture_output=True, timeout=30).returncode == 0

    def start_redis() -> subprocess.Popen:
        proc = subprocess.Popen([localize(a) for a in services["redis"]["command"]], env=service_env("redis"),
                                stdout=subprocess.DEVNULL, cwd=tmp_path)
        assert wait_until(lambda: healthy("redis"), 15)
        return proc

    procs = [start_redis()]
    try:
        import redis

        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        r = redis.Redis(port=port, password="compose-redis-pw")
        assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert r.config_get("appendonly") == {"appendonly": "yes"} and int(r.config_get("maxmemory")["maxmemory"]) > 0
        master = subprocess.Popen(okplan_cmd(*[localize(a) for a in services["master"]["command"]]),
                                  stdout=subprocess.PIPE, env=service_env("master"))
        procs.append(master)
        url = master.stdout.readline().decode().split("listening on ")[1].split()[0]
        assert healthy("master", url)
        for _ in range(services["worker"]["deploy"]["replicas"]):
            procs.append(subprocess.Popen(okplan_cmd(*[localize(a, url) for a in services["worker"]["command"]]),
                                          env=service_env("worker")))
        ctx = _connect(url, secret="compose-secret")
        try:
            assert wait_until(lambda: ctx.executor.hello()["slots"] == 2, 15)
            assert healthy("worker", url)
            assert ctx.parallelize(range(100), 4).map(lambda x: (x % 3, 1)).reduceByKey(lambda a, b: a + b) \
                .collectAsMap() == {0: 34, 1: 33, 2: 33}
            assert len(ctx.lastJobMetrics().tasks_per_worker) == 2
            ctx.dataSet(["kept", "across", "restarts"], label="durable", bufferSize=2)
        finally:
            ctx.stop()
        procs[0].terminate()  # a clean stop flushes the append-only file, as `docker compose restart` does
        procs[0].wait(10)
        procs[0] = start_redis()
        ctx = _connect(url, secret="compose-secret")
        try:
            assert ctx.dataSet(label="durable", fromExisting=True).collect() == ["kept", "across", "restarts"]
        finally:
            ctx.stop()
    finally:
        stop_processes(procs)


def test_the_docker_build_context_sends_only_what_the_image_copies():
    ignored = [line.strip() for line in open(".dockerignore") if line.strip() and not line.startswith("#")]
    assert ignored[0] == "*"  # everything is excluded unless listed
    copied = [a.rstrip("/") for line in open("docker/Dockerfile") if line.startswith("COPY ")
              for a in line.split()[1:-1]]
    assert copied and all(f"!{c}" in ignored or f"!{c}/" in ignored for c in copied)
