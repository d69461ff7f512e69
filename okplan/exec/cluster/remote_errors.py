"""User exceptions across processes: the worker packs one, the client raises it again.

The client gets the original type and message, the note ``run_task`` added (stage, partition, ...) and
the worker's traceback as one more note. An exception that cannot be pickled arrives as a substitute of
the same name (and the same builtin base, e.g. ``ValueError``) carrying the message.

>>> body, blob = pack_exception(ValueError("bad"), "w1")
>>> e = unpack_exception(body, blob)
>>> type(e), str(e)
(<class 'ValueError'>, 'bad')
"""

from __future__ import annotations

import builtins
import traceback
from typing import Any

from ..serialization import deserialize, serialize

_substitutes: dict[tuple[str, str, str], type] = {}


def pack_exception(exc: BaseException, worker: str) -> tuple[dict[str, Any], bytes]:
    """Fields for a FAILED message and the pickled exception (empty when it cannot round-trip)."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    blob = b""
    try:
        data = serialize(exc)
        deserialize(data)  # an exception whose __init__ does not take its args fails only here
        blob = data
    except Exception:
        pass
    bases = [c.__name__ for c in type(exc).__mro__ if c.__module__ == "builtins" and c is not object]
    body = {
        "type": type(exc).__qualname__,
        "module": type(exc).__module__,
        "bases": bases,
        "message": _safe_str(exc),
        "notes": [n for n in getattr(exc, "__notes__", []) if isinstance(n, str)],
        "traceback": tb,
        "worker": worker,
        "stage": getattr(exc, "_okplan_stage", None),
        "partition": getattr(exc, "_okplan_partition", None),
    }
    return body, blob


def unpack_exception(body: dict[str, Any], blob: bytes) -> BaseException:
    """The exception to raise in the client, with the worker's traceback as a note."""
    exc: BaseException | None = None
    if blob:
        try:
            exc = deserialize(blob)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        exc = _substitute(body)(body.get("message", ""))
        for note in body.get("notes", []):
            exc.add_note(note)
    tb = body.get("traceback")
    if tb:
        exc.add_note(f"okplan: traceback on worker {body.get('worker', '?')}:\n{tb.rstrip()}")
    return exc


def _substitute(body: dict[str, Any]) -> type:
    """A class named like the original, deriving from its most specific builtin base."""
    name, module = body.get("type", "RemoteError"), body.get("module", "")
    base_name = (body.get("bases") or ["Exception"])[0]
    key = (module, name, base_name)
    cls = _substitutes.get(key)
    if cls is None:
        base = getattr(builtins, base_name, Exception)
        if not (isinstance(base, type) and issubclass(base, BaseException)):
            base = Exception
        cls = type(name.rsplit(".", 1)[-1], (base,), {"__module__": module or __name__,
                                                      "__doc__": f"Stands in for {module}.{name}, "
                                                                 f"which could not be pickled."})
        _substitutes[key] = cls
    return cls


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<{type(exc).__name__}: str() failed>"
