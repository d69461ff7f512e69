"""Accumulators: variables tasks add to and only the caller reads, as in PySpark.

In the caller's process an ``Accumulator`` adds in place. Pickled into a task that runs in another
process it arrives as a zeroed copy registered for that task; the task returns its updates with its
result and the caller merges them, so a worker never writes the caller's value directly.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Callable

_ids = itertools.count(1)
_local = threading.local()
_originals: dict[int, "Accumulator"] = {}


def _add(a, b):
    return a + b


class Accumulator:
    """A shared counter or sum. ``+=`` / ``add`` in tasks, ``.value`` in the caller.

    >>> acc = ctx.accumulator(0)
    >>> ctx.parallelize([1, 2, 3]).foreach(lambda x: acc.add(x))
    >>> acc.value
    6
    """

    def __init__(self, value: Any, add: Callable[[Any, Any], Any] = _add, zero: Any = None,
                 aid: int | None = None):
        self.aid = next(_ids) if aid is None else aid
        # tasks of several threads (local executor) and merges of several jobs add at once
        self._lock = threading.Lock()
        self._value = value
        self._add = add
        self._zero = zero if zero is not None else _zero_like(value)
        if aid is None:
            _originals[self.aid] = self

    @property
    def value(self) -> Any:
        return self._value

    @value.setter
    def value(self, v: Any) -> None:
        self._value = v

    def add(self, term: Any) -> None:
        with self._lock:
            self._value = self._add(self._value, term)

    def __iadd__(self, term: Any) -> "Accumulator":
        self.add(term)
        return self

    def __repr__(self) -> str:
        return f"Accumulator<id={self.aid}, value={self._value!r}>"

    def __reduce__(self):
        return (_task_copy, (self.aid, self._zero, self._add))


def _zero_like(value: Any) -> Any:
    try:
        return type(value)()
    except Exception:
        return 0


def _task_copy(aid: int, zero: Any, add: Callable) -> Accumulator:
    """Unpickling in a task process: a zeroed copy whose updates travel back with the task result."""
    registry = getattr(_local, "registry", None)
    if registry is None:
        registry = _local.registry = {}
    acc = registry.get(aid)
    if acc is None:
        acc = registry[aid] = Accumulator(zero, add, zero, aid=aid)
    return acc


def begin_task(registry: dict[int, Accumulator] | None = None) -> dict[int, Accumulator]:
    """Start collecting updates: of the accumulators a task's functions will unpickle (a new registry),
    or of those already unpickled into ``registry`` (a worker that keeps a job's functions across its
    tasks passes the registry it got when it unpickled them). Returns the registry in use."""
    _local.registry = {} if registry is None else registry
    return _local.registry


def task_updates() -> dict[int, Any]:
    """The updates the current task made, by accumulator id; resets them to zero."""
    registry = getattr(_local, "registry", None) or {}
    out = {}
    for aid, acc in registry.items():
        out[aid] = acc._value
        acc._value = acc._zero
    return out


def merge_updates(updates: dict[int, Any]) -> None:
    """In the caller: fold a task's updates into the original accumulators."""
    for aid, value in updates.items():
        acc = _originals.get(aid)
        if acc is not None:
            acc.add(value)
