"""Helpers for the cluster tests: real processes, real sockets, real Redis on random local ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator

import psutil

from okplan import Context
from okplan.exec.cluster.launcher import LocalCluster, redis_server_binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def cluster_context(n: int = 2, **options) -> Iterator[Context]:
    """A Context on a fresh local cluster of ``n`` workers (quick heartbeat timeout for fault tests)."""
    options.setdefault("heartbeat_timeout", 1.5)
    ctx = Context(f"local-cluster[{n}]", **options)
    try:
        yield ctx
    finally:
        ctx.stop()


def job_keys(ctx: Context, kept: bool = False) -> list[str]:
    """Every okplan key in the cluster's Redis, except named datasets and (unless ``kept``) shuffles
    kept for reuse: those live as long as the datasets that reach them (tests/test_shuffle_reuse.py)."""
    keys = sorted(k.decode() for k in ctx.executor.store.r.keys("okplan:*"))
    return [k for k in keys if not k.startswith("okplan:named") and (kept or not k.startswith("okplan:kept:"))]


def kept_keys(ctx: Context) -> list[str]:
    """The keys of shuffles kept for reuse (``okplan:kept:``) in the cluster's Redis."""
    return sorted(k.decode() for k in ctx.executor.store.r.keys("okplan:kept:*"))


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def pids_gone(pids: list[int], timeout: float = 10.0) -> bool:
    def gone() -> bool:
        for pid in pids:
            try:
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    return False
            except psutil.NoSuchProcess:
                pass
        return True
    return wait_until(gone, timeout)


@contextmanager
def redis_server() -> Iterator[str]:
    """A standalone redis-server on a free port; yields its URL."""
    port = free_port()
    proc = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, cwd="/tmp")
    try:
        import redis

        r = redis.Redis(port=port)
        assert wait_until(lambda: _pings(r), 10), "redis-server did not start"
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(5)


def _pings(r) -> bool:
    try:
        return bool(r.ping())
    except Exception:
        return False


@contextmanager
def hand_made_cluster(redis_url: str, workers: int = 1, secret: str | None = None, master_args: tuple = (),
                      worker_args: tuple = (), logs: str | None = None) -> Iterator[str]:
    """``okplan master`` + ``okplan worker`` as compose would run them (the worker learns Redis from the
    master); yields the master's URL. Without ``secret`` the master runs ``--insecure`` (on loopback).
    ``logs``: a directory that gets each process's stderr (``master.log``, ``worker-0.log``...)."""
    env = child_env()
    if secret:
        env["OKPLAN_SECRET"] = secret
    else:
        master_args = ("--insecure", *master_args)
    files = []

    def stderr(name: str):
        if logs is None:
            return None
        f = open(os.path.join(logs, name), "wb")
        files.append(f)
        return f

    master = subprocess.Popen(okplan_cmd("master", "--bind", "tcp://127.0.0.1:0", "--redis", redis_url,
                                         *master_args), stdout=subprocess.PIPE, stderr=stderr("master.log"), env=env)
    procs = [master]
    try:
        line = master.stdout.readline().decode()
        assert "listening on tcp://127.0.0.1:" in line, line
        url = line.split("listening on ")[1].split()[0]
        for i in range(workers):
            procs.append(subprocess.Popen(okplan_cmd("worker", "--master", url, "--slots", "1", *worker_args),
                                          stderr=stderr(f"worker-{i}.log"), env=env))
        yield url
    finally:
        stop_processes(procs)
        master.stdout.close()
        for f in files:
            f.close()
        assert pids_gone([p.pid for p in procs])


def stop_processes(procs) -> None:
    """Terminate hand-started okplan processes (``None`` entries: never started) and reap them."""
    procs = [p for p in procs if p is not None]
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(10)


def okplan_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "okplan", *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("OKPLAN_SECRET", None)
    return env


__all__ = ["LocalCluster", "cluster_context", "job_keys", "kept_keys", "wait_until", "pids_gone", "redis_server", "free_port",
           "okplan_cmd", "child_env", "hand_made_cluster"]
