"""Sampled per-operator timing (``Context(profile=True)`` or ``OKPLAN_PROFILE=1``).

A fused stage runs its operators interleaved record by record, so their times cannot be read off a
clock around each one without a timer per record. Instead one daemon thread per process looks at the
running task's stack every couple of milliseconds (as statistical profilers do) and charges the
interval to the innermost frame that belongs to an operator: a user function (``Map(parse)``), the
engine's shuffle write or aggregation, block reading, or the action. A task's samples are scaled to
its wall time. Nothing runs, and nothing is timed, when profiling is off.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from ..physical.operators import Pipe, user_functions
from ..physical.stage import Stage

#: seconds between two looks at a task's stack
INTERVAL = 0.002
OTHER = "other (engine)"
#: engine modules whose frames are charged to moving data in and out, not to an operator
_IO_FILES = ("serialization.py", "blocks.py", "store.py")


def profile_wanted() -> bool:
    """``OKPLAN_PROFILE`` set to something other than 0/false/no/off.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"OKPLAN_PROFILE": "1"}):
    ...     profile_wanted()
    True
    """
    return (os.environ.get("OKPLAN_PROFILE") or "").strip().lower() not in ("", "0", "false", "no", "off")


def operator_codes(stage: Stage, action: Callable | None) -> dict[Any, str]:
    """Code object -> operator name, for every function a task of ``stage`` may be inside."""
    from .task import bucketize, combine_values, merge_combiners  # noqa: PLC0415 - task imports this module's users

    codes: dict[Any, str] = {}

    def add(f: Any, name: str) -> None:
        code = getattr(f, "__code__", None)
        if code is not None:
            codes.setdefault(code, name)

    for name, f in user_functions(stage.root):
        add(f, name)
    stack = [stage.root]
    while stack:
        op = stack.pop()
        if isinstance(op, Pipe):
            for name, fn in zip(op.names, op.fns):
                add(fn, name)
        stack.extend(op.children())
    add(bucketize, "shuffle write")
    add(combine_values, "aggregate")
    add(merge_combiners, "aggregate (merge)")
    if action is not None:
        label = f"action {getattr(action, 'name', '')}".strip()
        add(getattr(action, "user_func", None), label)
        add(getattr(action, "fn", None), label)
    return codes


class _Sampler:
    """The per-process sampling thread; tasks register their thread while they run."""

    def __init__(self) -> None:
        self.targets: dict[int, tuple[dict[Any, str], dict[str, int]]] = {}
        self.wake = threading.Event()
        threading.Thread(target=self._loop, name="okplan-profiler", daemon=True).start()

    def _loop(self) -> None:
        while True:
            if not self.targets:
                self.wake.wait()
                self.wake.clear()
                continue
            time.sleep(INTERVAL)
            frames = sys._current_frames()
            for tid, (codes, counts) in list(self.targets.items()):
                f = frames.get(tid)
                name = None
                while f is not None:
                    code = f.f_code
                    name = codes.get(code)
                    if name is not None:
                        break
                    if code.co_filename.endswith(_IO_FILES):
                        name = "read/write blocks"
                        break
                    f = f.f_back
                name = name or OTHER
                counts[name] = counts.get(name, 0) + 1


_sampler: _Sampler | None = None
_lock = threading.Lock()


def _forget_sampler_after_fork() -> None:
    # a forked child (local[N]'s task processes) inherits the object but not its thread: start anew
    global _sampler, _lock
    _sampler, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_sampler_after_fork)


@contextmanager
def profiled(stage: Stage, action: Callable | None = None) -> Iterator[dict[str, float]]:
    """Sample the calling thread while the block runs; the dict yielded is filled, on exit, with
    seconds per operator (samples scaled to the block's wall time).

    >>> with profiled(stage) as ops:                       # doctest: +SKIP
    ...     run_task(stage, 0, blocks)
    >>> ops                                                # doctest: +SKIP
    {'Map(parse)': 0.61, 'shuffle write': 0.22, 'other (engine)': 0.05}
    """
    global _sampler
    with _lock:
        if _sampler is None:
            _sampler = _Sampler()
    sampler = _sampler
    counts: dict[str, int] = {}
    tid = threading.get_ident()
    out: dict[str, float] = {}
    sampler.targets[tid] = (operator_codes(stage, action), counts)
    sampler.wake.set()
    t0 = time.perf_counter()
    try:
        yield out
    finally:
        sampler.targets.pop(tid, None)
        elapsed = time.perf_counter() - t0
        total = sum(counts.values())
        for name, n in counts.items():
            out[name] = elapsed * n / total
