"""Tracebacks that show the user's code: the engine's own frames between the action call and the
user function that raised are dropped (set ``OKPLAN_FULL_TRACEBACK=1`` to keep them)."""

from __future__ import annotations

import os
import types

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def user_frames(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` without frames of okplan's own files (a new chain; frames are shared, not copied)."""
    if os.environ.get("OKPLAN_FULL_TRACEBACK"):
        return tb
    kept = []
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            kept.append(tb)
        tb = tb.tb_next
    chain = None
    for t in reversed(kept):
        chain = types.TracebackType(chain, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return chain


def trim(exc: BaseException) -> None:
    """Drop engine frames from an exception raised by user code inside a task."""
    if getattr(exc, "_okplan_noted", False):
        exc.__traceback__ = user_frames(exc.__traceback__)
