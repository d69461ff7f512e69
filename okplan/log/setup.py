"""Where engine log lines go: a stderr handler on the ``okplan`` logger, JSON unless asked for text."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from .formatter import JsonFormatter, TextFormatter, level_number

ROOT = "okplan"


class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` (or a given stream), so redirections made later count."""

    def __init__(self, stream: TextIO | None = None):
        super().__init__(stream)
        self._fixed = stream

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = self._fixed or sys.stderr
        super().emit(record)


def get_logger(name: str) -> logging.Logger:
    """The engine logger for module ``name`` (``okplan.exec.cluster.master`` -> ``okplan.master``).

    >>> get_logger("okplan.exec.cluster.master").name
    'okplan.master'
    """
    short = name.rsplit(".", 1)[-1]
    return logging.getLogger(f"{ROOT}.{short}")


def configure(level: str | int | None = None, fmt: str | None = None, stream: TextIO | None = None) -> None:
    """Send the ``okplan`` loggers to stderr, one JSON object per line (``fmt="text"``: readable lines).
    ``level`` defaults to ``LOG_LEVEL``, else info. Called once by ``okplan master``/``worker``.

    >>> configure("debug", "text")                         # doctest: +SKIP
    """
    level = level or os.environ.get("LOG_LEVEL") or "info"
    fmt = fmt or os.environ.get("OKPLAN_LOG_FORMAT") or "json"
    if fmt not in ("json", "text"):
        raise ValueError(f"unknown log format {fmt!r}; use json or text")
    logger = logging.getLogger(ROOT)
    for h in list(logger.handlers):
        if getattr(h, "_okplan", False):
            logger.removeHandler(h)
    handler = _StderrHandler(stream)
    handler._okplan = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level_number(level))
    logger.propagate = False


def ensure_configured() -> None:
    """In a client process: log the engine's warnings (``LOG_LEVEL`` for more) as JSON on stderr, unless
    the application configured logging itself (then okplan's records go to its handlers)."""
    logger = logging.getLogger(ROOT)
    if logger.handlers or logging.getLogger().handlers:
        return
    configure(os.environ.get("LOG_LEVEL") or "warn")
