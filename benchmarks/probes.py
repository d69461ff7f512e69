"""Adapters from the micro-benchmarks to okplan's cluster components (serialization, block store,
protocol, master). Those are being built alongside this suite, so each probe looks for what exists
and returns None when there is nothing to measure yet; the micro-benchmark then prints a skip note."""

from __future__ import annotations

import importlib
import time
from typing import Any, Callable


def _module(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - absent or half-built: nothing to measure
        return None


def block_codec() -> tuple[Callable[[Any], bytes], Callable[[bytes], Any], str] | None:
    """okplan's whole-block encode/decode (pickle protocol 5 + lz4), as ``(encode, decode, name)``."""
    mod = _module("okplan.exec.serialization")
    if mod is None:
        return None
    for enc, dec in (("encode_block", "decode_block"), ("dumps_block", "loads_block"), ("encode", "decode"),
                     ("dumps", "loads"), ("serialize", "deserialize"), ("pack", "unpack")):
        if callable(getattr(mod, enc, None)) and callable(getattr(mod, dec, None)):
            return getattr(mod, enc), getattr(mod, dec), f"serialization.{enc}/{dec}"
    return None


def block_store(port: int) -> tuple[Callable[[str, bytes], None], Callable[[str], bytes], str] | None:
    """okplan's Redis block store on ``127.0.0.1:port``, as ``(put(key, blob), get(key), name)``: one
    block per call, as a task writes its output and the next stage reads it."""
    mod = _module("okplan.exec.cluster.store")
    if mod is None or not hasattr(mod, "BlockStore"):
        return None
    store = mod.BlockStore(f"redis://127.0.0.1:{port}/0")

    def put(key: str, blob: bytes) -> None:
        store.put_many([(key, blob)], 600)

    def get(key: str) -> bytes:
        return store.get_many([key])[0]

    return put, get, "BlockStore.put_many/get_many"


def has_protocol() -> bool:
    """Whether okplan's cluster message protocol (``pack``/``unpack``, TASK/DONE) exists to measure."""
    P = _module("okplan.exec.cluster.protocol")
    return P is not None and all(hasattr(P, n) for n in ("pack", "unpack", "TASK", "DONE"))


def scheduling_throughput(tasks: int = 2_000, workers: int = 2) -> tuple[float, str, str] | None:
    """No-op tasks per second through a real ``local-cluster[workers]``: one job of ``tasks``
    one-record partitions, end to end (master scheduling, worker round trips, Redis)."""
    if _module("okplan.exec.cluster.launcher") is None:
        return None
    from okplan import Context

    with Context(f"local-cluster[{workers}]") as ctx:
        ds = ctx.range(tasks, numSlices=tasks).map(_noop)
        ds.reduce(_add)    # warm-up: workers connected, functions shipped once
        t0 = time.perf_counter()
        ds.reduce(_add)
        seconds = time.perf_counter() - t0
    return tasks / seconds, f"local-cluster[{workers}]", (
        f"{tasks:,} one-record tasks in one job, end to end with {workers} real workers")


def _noop(x: Any) -> Any:
    return x


def _add(a: Any, b: Any) -> Any:
    return a + b
