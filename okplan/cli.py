"""The ``okplan`` command: run cluster processes, manage named datasets, run scripts.

    okplan master  [--bind tcp://127.0.0.1:7077] [--redis URL] [--secret S]
    okplan worker  --master tcp://HOST:7077 [--redis URL] [--slots N] [--secret S] [--no-restart]
    okplan local-cluster N            Redis + master + N workers in the foreground, until Ctrl-C
    okplan datasets list|drop LABEL   [--master URL | --redis URL]
    okplan status  --master URL [--host NAME]   exit 0 when the master answers (a healthcheck)
    okplan run script.py [args...]

The Redis URL defaults to ``OKPLAN_REDIS``, else the seed's ``REDIS_HOST``/``REDIS_PORT``, else
``redis://127.0.0.1:6379/0``, with ``OKPLAN_REDIS_PASSWORD`` as its password when it names none; the
secret to ``OKPLAN_SECRET``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import runpy
import signal
import sys
from urllib.parse import urlparse

DEFAULT_BIND = "tcp://127.0.0.1:7077"


def default_redis_url() -> str:
    """``OKPLAN_REDIS``, else ``redis://REDIS_HOST:REDIS_PORT/0`` (the seed's variables).

    >>> default_redis_url()                                  # doctest: +SKIP
    'redis://127.0.0.1:6379/0'
    """
    url = os.environ.get("OKPLAN_REDIS")
    if not url:
        host = os.environ.get("REDIS_HOST", "127.0.0.1")
        port = os.environ.get("REDIS_PORT", "6379")
        url = f"redis://{host}:{port}/0"
    from .exec.cluster.store import with_env_password

    return with_env_password(url)


def _is_loopback(bind: str) -> bool:
    host = urlparse(bind).hostname or ""
    if host in ("localhost", "lo"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _master(args: argparse.Namespace) -> int:
    from .exec.cluster.master import serve

    secret = args.secret or os.environ.get("OKPLAN_SECRET")
    if not _is_loopback(args.bind) and not secret and not args.insecure:
        print(f"okplan master: refusing to listen on {args.bind} without a shared secret: anyone who can "
              f"reach it could run code here. Set --secret or OKPLAN_SECRET (or pass --insecure).",
              file=sys.stderr)
        return 2
    serve(args.bind, args.redis or default_redis_url(), secret, args.parent_pid, args.heartbeat_timeout,
          args.also_kill, args.client_timeout)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from .exec.cluster.worker import serve

    return serve(args.master, args.redis, args.slots, args.secret or os.environ.get("OKPLAN_SECRET"),
                 args.parent_pid, args.name, restart=not args.no_restart)


def _local_cluster(args: argparse.Namespace) -> int:
    from .exec.cluster.launcher import LocalCluster
    from .exec.cluster.store import redacted

    cluster = LocalCluster(args.n, slots=args.slots)
    print(f"okplan local-cluster: master {cluster.master_url}, redis {redacted(cluster.redis_url)}, "
          f"{args.n} workers. Connect with Context({cluster.master_url!r}). Ctrl-C stops it.", flush=True)
    for sig in (signal.SIGTERM, signal.SIGINT):  # SIGINT too: a shell ignores it for background jobs
        signal.signal(sig, lambda *_: sys.exit(0))
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        cluster.stop()
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from .errors import OkplanError
    from .exec.cluster.store import BlockStore

    try:
        if args.master:
            from .exec.cluster.client import ClusterExecutor

            ex = ClusterExecutor(args.master, redis=args.redis)
            store = ex.store
        else:
            store = BlockStore(args.redis or default_redis_url())
        if args.action == "list":
            for label in store.list_named():
                print(label)
            return 0
        if not args.label:
            print("okplan datasets drop: which label?", file=sys.stderr)
            return 2
        if store.drop_named(args.label):
            print(f"dropped {args.label}")
            return 0
        print(f"no dataset is saved under {args.label!r}", file=sys.stderr)
        return 1
    except OkplanError as e:
        print(f"okplan datasets: {e}", file=sys.stderr)
        return 1


def _status(args: argparse.Namespace) -> int:
    """A healthcheck: the master answers (and so does its Redis); with ``--host``, a worker of that
    host is connected."""
    from .errors import OkplanError
    from .exec.cluster.client import ClusterExecutor
    from .exec.cluster.store import redacted

    try:
        ex = ClusterExecutor(args.master, redis=args.redis, connect_timeout=args.timeout)
        try:
            info = ex.hello(args.timeout)
        finally:
            ex.stop()
    except OkplanError as e:
        print(f"okplan status: {e}", file=sys.stderr)
        return 1
    print(f"master {args.master}: {info.get('workers', 0)} workers, {info.get('slots', 0)} slots on "
          f"{', '.join(info.get('hosts') or []) or 'no host'}; redis {redacted(info.get('redis', '?'))}")
    if args.host and args.host not in (info.get("hosts") or []):
        print(f"okplan status: no worker of host {args.host!r} is connected to {args.master}", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace) -> int:
    sys.argv = [args.script, *args.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    runpy.run_path(args.script, run_name="__main__")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="okplan", description="okplan cluster processes and tools")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("master", help="run the scheduler")
    m.add_argument("--bind", default=DEFAULT_BIND, help=f"ZeroMQ endpoint (default {DEFAULT_BIND}; port 0 = any)")
    m.add_argument("--redis", help="Redis URL, password included (redis://:pw@host:6379/0)")
    m.add_argument("--secret", help="shared secret clients and workers must have (or OKPLAN_SECRET)")
    m.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without a secret")
    m.add_argument("--heartbeat-timeout", type=float, default=5.0, help="seconds before a silent worker is dead")
    m.add_argument("--client-timeout", type=float, default=10.0,
                   help="seconds before the jobs of a silent client are cancelled (clients beat every second)")
    m.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    m.add_argument("--also-kill", type=int, action="append", help=argparse.SUPPRESS)
    m.set_defaults(func=_master)

    w = sub.add_parser("worker", help="run tasks for a master")
    w.add_argument("--master", default=DEFAULT_BIND, help="the master's endpoint, tcp://host:port")
    w.add_argument("--redis", help="Redis URL (default: the one the master uses)")
    w.add_argument("--slots", type=int, default=1, help="tasks at a time (one task process each)")
    w.add_argument("--secret", help="the cluster's shared secret (or OKPLAN_SECRET)")
    w.add_argument("--name", help="worker name in metrics (default host-pid)")
    w.add_argument("--no-restart", action="store_true",
                   help="run the supervisor in this process; by default a dead one is restarted (with backoff)")
    w.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    w.set_defaults(func=_worker)

    lc = sub.add_parser("local-cluster", help="Redis, a master and N workers here, until Ctrl-C")
    lc.add_argument("n", type=int)
    lc.add_argument("--slots", type=int, default=1)
    lc.set_defaults(func=_local_cluster)

    d = sub.add_parser("datasets", help="list or drop named datasets")
    d.add_argument("action", choices=["list", "drop"])
    d.add_argument("label", nargs="?")
    d.add_argument("--master", help="ask this master for the Redis URL")
    d.add_argument("--redis", help="Redis URL (default OKPLAN_REDIS or REDIS_HOST/REDIS_PORT)")
    d.set_defaults(func=_datasets)

    st = sub.add_parser("status", help="check that a master (and its Redis) answers; for healthchecks")
    st.add_argument("--master", default=DEFAULT_BIND, help="the master's endpoint")
    st.add_argument("--redis", help="Redis URL as seen from here (default: the master's)")
    st.add_argument("--host", help="also require a connected worker of this host name")
    st.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the master")
    st.set_defaults(func=_status)

    r = sub.add_parser("run", help="run a Python script (python script.py, with okplan importable)")
    r.add_argument("script")
    r.add_argument("args", nargs=argparse.REMAINDER)
    r.set_defaults(func=_run)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``okplan`` console script.

    >>> main(["datasets", "list", "--redis", "redis://127.0.0.1:6379/0"])   # doctest: +SKIP
    0
    """
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
