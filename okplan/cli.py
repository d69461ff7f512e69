"""The ``okplan`` command: run cluster processes, manage named datasets, run scripts.

    okplan master  [--bind tcp://127.0.0.1:7077] [--redis URL] [--secret-file F] [--insecure]
                   [--dashboard HOST:PORT | --no-dashboard]
    okplan worker  --master tcp://HOST:7077 [--redis URL] [--slots N] [--secret-file F] [--no-restart]
    okplan local-cluster N            Redis + master + N workers in the foreground, until Ctrl-C
    okplan status  [--master URL] [--host NAME] [--json]   workers and jobs; exit 0 when the master
                                      (and its Redis) answer: a healthcheck
    okplan datasets list|drop LABEL   [--master URL | --redis URL]
    okplan run [--master URL] script.py [args...]
    okplan --version

Server commands log JSON lines to stderr (``--log-level``, ``--log-format text``; ``LOG_LEVEL``). The
master address defaults to ``OKPLAN_MASTER``; the Redis URL to ``OKPLAN_REDIS``, else the seed's
``REDIS_HOST``/``REDIS_PORT``, else ``redis://127.0.0.1:6379/0``, with ``OKPLAN_REDIS_PASSWORD`` as its
password when it names none; the secret to ``OKPLAN_SECRET``, else the contents of the file
``OKPLAN_SECRET_FILE`` names. Bad arguments and unreachable servers give a one-line error and exit code
2 or 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import signal
import sys
import urllib.error
import urllib.request
from typing import Any, NoReturn

DEFAULT_BIND = "tcp://127.0.0.1:7077"
#: the dashboard of ``okplan master`` (the next free port is taken when it is busy)
DEFAULT_DASHBOARD = "127.0.0.1:7078"
_DASHBOARD_TRIES = 16


def default_master() -> str:
    """``OKPLAN_MASTER`` when it names a cluster (``tcp://...``), else ``tcp://127.0.0.1:7077``."""
    url = os.environ.get("OKPLAN_MASTER") or ""
    return url if url.startswith("tcp://") else DEFAULT_BIND


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


def _secret(args: argparse.Namespace, program: str) -> bytes | None:
    """``--secret``, else ``--secret-file``, else ``OKPLAN_SECRET`` / ``OKPLAN_SECRET_FILE``."""
    from .exec.cluster.security import load_secret, read_secret_file

    if args.secret:
        print(f"okplan {program}: warning: --secret is visible to every user of this machine (ps); use "
              f"OKPLAN_SECRET_FILE or --secret-file", file=sys.stderr)
        return load_secret(args.secret)
    if args.secret_file:
        return read_secret_file(args.secret_file)
    return load_secret(None)


def _master(args: argparse.Namespace) -> int:
    from .errors import ConfigurationError
    from .exec.cluster.dashboard import dashboard_token, parse_hostport
    from .exec.cluster.master import serve
    from .exec.cluster.security import is_loopback

    try:
        secret = _secret(args, "master")
        dashboard = token = None
        if not args.no_dashboard:
            dashboard = parse_hostport(args.dashboard or DEFAULT_DASHBOARD)
            if not is_loopback(f"tcp://{dashboard[0]}:0"):
                if not secret and not args.insecure:
                    print(f"okplan master: refusing to serve the dashboard on {dashboard[0]} without a shared "
                          f"secret. Set OKPLAN_SECRET or OKPLAN_SECRET_FILE, keep it on 127.0.0.1, or pass "
                          f"--no-dashboard.", file=sys.stderr)
                    return 2
                if secret:
                    token = dashboard_token(secret)
        serve(args.bind, args.redis or default_redis_url(), secret, args.parent_pid, args.heartbeat_timeout,
              args.also_kill, args.client_timeout, dashboard, token, 1 if args.dashboard else _DASHBOARD_TRIES,
              insecure=args.insecure, max_message_bytes=args.max_message_bytes)
    except ConfigurationError as e:
        print(f"okplan master: {e}", file=sys.stderr)
        return 2
    return 0


def _worker(args: argparse.Namespace) -> int:
    from .errors import ConfigurationError
    from .exec.cluster.worker import serve

    try:
        secret = _secret(args, "worker")
    except ConfigurationError as e:
        print(f"okplan worker: {e}", file=sys.stderr)
        return 2
    # one task process per core by default, as a Spark worker offers all its cores
    slots = args.slots or os.cpu_count() or 1
    return serve(args.master, args.redis, slots, secret, args.parent_pid, args.name,
                 restart=not args.no_restart)


def _local_cluster(args: argparse.Namespace) -> int:
    from .exec.cluster.launcher import LocalCluster
    from .exec.cluster.store import redacted

    cluster = LocalCluster(args.n, slots=args.slots, log_level=args.log_level or os.environ.get("LOG_LEVEL") or "info")
    print(f"okplan local-cluster: master {cluster.master_url}, redis {redacted(cluster.redis_url)}, "
          f"{args.n} workers, dashboard {cluster.ui_web_url}. Connect with Context({cluster.master_url!r}). "
          f"Ctrl-C stops it.", flush=True)
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
    """Workers and jobs, read from the master's dashboard API; exit 0 when the master answers (and its
    Redis): a healthcheck. With ``--host``, a worker of that host must be connected too."""
    from .errors import OkplanError
    from .exec.cluster.client import ClusterExecutor
    from .exec.cluster.store import redacted

    master = args.master or default_master()
    try:
        ex = ClusterExecutor(master, secret=args.secret, redis=args.redis, connect_timeout=args.timeout)
        try:
            info = ex.hello(args.timeout)
        finally:
            ex.stop()
    except OkplanError as e:
        print(f"okplan status: {e}", file=sys.stderr)
        return 1
    view = _dashboard_view(info.get("dashboard"), args.timeout)
    if args.json:
        print(json.dumps(view if view is not None else info, indent=2))
    elif view is not None:
        print(_status_text(view, info["dashboard"].partition("?")[0]))
    else:
        print(f"master {master}: {info.get('workers', 0)} workers, {info.get('slots', 0)} slots on "
              f"{', '.join(info.get('hosts') or []) or 'no host'}; redis {redacted(info.get('redis', '?'))}")
    if args.host and args.host not in (info.get("hosts") or []):
        print(f"okplan status: no worker of host {args.host!r} is connected to {master}", file=sys.stderr)
        return 1
    return 0


def _dashboard_view(url: str | None, timeout: float) -> dict[str, Any] | None:
    """The dashboard's ``/api/status``, or None (no dashboard, or it does not answer: said on stderr)."""
    if not url:
        return None
    base, _, query = url.partition("?")
    try:
        with urllib.request.urlopen(base.rstrip("/") + "/api/status" + (f"?{query}" if query else ""),
                                    timeout=timeout) as r:
            return json.load(r)
    except (urllib.error.URLError, OSError, ValueError) as e:
        print(f"okplan status: the dashboard at {base} does not answer ({getattr(e, 'reason', e)})", file=sys.stderr)
        return None


def _status_text(view: dict[str, Any], url: str) -> str:
    lines = [f"master {view['endpoint']}  redis {view['redis']}  dashboard {url}",
             f"{len(view['workers'])} workers, {view['slots']} slots"]
    for w in view["workers"]:
        lines.append(f"  {w['name']:<28} {w['host'] or '':<16} slots {w['slots']}  running {w['running']}  "
                     f"done {w['tasks_done']}  seen {w['seen_ago']:.1f}s ago")
    running = [j for j in view["jobs"] if j["state"] == "running"]
    lines.append(f"{len(running)} running jobs, {len(view['jobs']) - len(running)} recent")
    for j in view["jobs"]:
        labels = f"  [{', '.join(j['labels'])}]" if j["labels"] else ""
        lines.append(f"  {j['id']}  {j['state']:<9} {j['app'] or '-':<16} {j['done']}/{j['tasks']} tasks  "
                     f"{j['seconds']:.2f}s{labels}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    if args.master:
        os.environ["OKPLAN_MASTER"] = args.master
    sys.argv = [args.script, *args.args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    runpy.run_path(args.script, run_name="__main__")
    return 0


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line naming the problem and where help is, instead of usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from . import __version__

    return f"okplan {__version__}"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="okplan", description="okplan cluster processes and tools")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    logs = _Parser(add_help=False)
    logs.add_argument("--log-level", type=str.lower, choices=["trace", "debug", "info", "warn", "error", "fatal"],
                      help="engine log threshold (default LOG_LEVEL, else info)")
    logs.add_argument("--log-format", choices=["json", "text"], help="JSON lines (default) or readable text")

    m = sub.add_parser("master", help="run the scheduler", parents=[logs])
    m.add_argument("--bind", default=DEFAULT_BIND, help=f"ZeroMQ endpoint (default {DEFAULT_BIND}; port 0 = any)")
    m.add_argument("--redis", help="Redis URL, password included (redis://:pw@host:6379/0)")
    m.add_argument("--secret", help="shared secret clients and workers must have (visible in ps: prefer "
                                    "OKPLAN_SECRET_FILE or OKPLAN_SECRET)")
    m.add_argument("--secret-file", help="file holding the shared secret (or OKPLAN_SECRET_FILE)")
    m.add_argument("--insecure", action="store_true",
                   help="listen without a shared secret: anyone who can connect can run code (warned)")
    m.add_argument("--heartbeat-timeout", type=float, default=5.0, help="seconds before a silent worker is dead")
    m.add_argument("--max-message-bytes", type=int, default=64 << 20,
                   help="larger messages are dropped and their sender disconnected (default 64 MiB)")
    m.add_argument("--client-timeout", type=float, default=10.0,
                   help="seconds before the jobs of a silent client are cancelled (clients beat every second)")
    m.add_argument("--dashboard", metavar="HOST:PORT",
                   help=f"serve the web dashboard here (default {DEFAULT_DASHBOARD}, or the next free port; "
                        f"port 0 = any)")
    m.add_argument("--no-dashboard", action="store_true", help="serve no dashboard")
    m.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    m.add_argument("--also-kill", type=int, action="append", help=argparse.SUPPRESS)
    m.set_defaults(func=_master)

    w = sub.add_parser("worker", help="run tasks for a master", parents=[logs])
    w.add_argument("--master", default=default_master(), help="the master's endpoint, tcp://host:port "
                                                              "(default OKPLAN_MASTER)")
    w.add_argument("--redis", help="Redis URL (default: the one the master uses)")
    w.add_argument("--slots", type=int, default=None,
                   help="tasks at a time, one task process each (default: the machine's cores)")
    w.add_argument("--secret", help="the cluster's shared secret (visible in ps: prefer OKPLAN_SECRET_FILE "
                                    "or OKPLAN_SECRET)")
    w.add_argument("--secret-file", help="file holding the shared secret (or OKPLAN_SECRET_FILE)")
    w.add_argument("--name", help="worker name in metrics (default host-pid)")
    w.add_argument("--no-restart", action="store_true",
                   help="run the supervisor in this process; by default a dead one is restarted (with backoff)")
    w.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    w.set_defaults(func=_worker)

    lc = sub.add_parser("local-cluster", help="Redis, a master and N workers here, until Ctrl-C", parents=[logs])
    lc.add_argument("n", type=int)
    lc.add_argument("--slots", type=int, default=1)
    lc.set_defaults(func=_local_cluster)

    d = sub.add_parser("datasets", help="list or drop named datasets")
    d.add_argument("action", choices=["list", "drop"])
    d.add_argument("label", nargs="?")
    d.add_argument("--master", help="ask this master for the Redis URL")
    d.add_argument("--redis", help="Redis URL (default OKPLAN_REDIS or REDIS_HOST/REDIS_PORT)")
    d.set_defaults(func=_datasets)

    st = sub.add_parser("status", help="workers and jobs of a cluster; exit 0 when its master (and Redis) "
                                       "answer, for healthchecks")
    st.add_argument("--master", help="the master's endpoint (default OKPLAN_MASTER, else tcp://127.0.0.1:7077)")
    st.add_argument("--redis", help="Redis URL as seen from here (default: the master's)")
    st.add_argument("--host", help="also require a connected worker of this host name")
    st.add_argument("--secret", help="the cluster's shared secret (or OKPLAN_SECRET)")
    st.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the master")
    st.add_argument("--json", action="store_true", help="print the dashboard's JSON (or the master's welcome)")
    st.set_defaults(func=_status)

    r = sub.add_parser("run", help="run a Python script (python script.py, with okplan importable)")
    r.add_argument("--master", help="the default master of the script's Context() (sets OKPLAN_MASTER)")
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
    if getattr(args, "log_level", None) or getattr(args, "log_format", None):
        # so that processes this one starts (worker slots, a local cluster's servers) log the same way
        if args.log_level:
            os.environ["LOG_LEVEL"] = args.log_level
        if args.log_format:
            os.environ["OKPLAN_LOG_FORMAT"] = args.log_format
    if args.command in ("master", "worker", "local-cluster"):
        from .log import configure

        configure(args.log_level, args.log_format)
    if args.command == "run":
        return args.func(args) or 0  # the user's script: its exceptions are its own
    try:
        return args.func(args) or 0
    except (OSError, ValueError) as e:
        print(f"okplan {args.command}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - one line instead of a traceback; details with LOG_LEVEL=debug
        from .errors import OkplanError

        if not isinstance(e, OkplanError) and type(e).__module__.split(".")[0] not in ("zmq", "redis"):
            raise
        print(f"okplan {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
