"""Adapters from the micro-benchmarks to okplan's cluster components (serialization, block store,
protocol, master). Those are being built alongside this suite, so each probe looks for what exists
and returns None when there is nothing to measure yet; the micro-benchmark then prints a skip note."""

from __future__ import annotations

import importlib
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


def block_store(port: int) -> tuple[Callable[[str, Any], None], Callable[[str], Any], str] | None:
    """okplan's Redis block store on ``127.0.0.1:port``, as ``(put(key, records), get(key), name)``."""
    return None


def task_round_trip() -> tuple[float, str] | None:
    """µs for one task message to a worker and its completion back, over okplan's protocol."""
    return None


def scheduling_throughput() -> tuple[float, str, str] | None:
    """No-op tasks per second the master schedules over simulated workers on loopback."""
    return None
