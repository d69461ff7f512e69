"""``Logger``: one JSON object per line, the seed's logger with a threshold from ``LOG_LEVEL``."""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
from typing import Any, TextIO

LEVELS = {"trace": 5, "debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "fatal": 50}

#: PySpark's ``setLogLevel`` names -> okplan thresholds (ALL lets everything through, OFF nothing)
SPARK_LEVELS = {"ALL": 0, "TRACE": 5, "DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40, "FATAL": 50, "OFF": 100}

#: a process-wide threshold set by ``Context.setLogLevel``; wins over ``LOG_LEVEL`` for loggers
#: created without an explicit level
_threshold: int | None = None


def set_threshold(level: str) -> None:
    """Set the process-wide threshold from one of PySpark's level names (case-insensitive); also the
    stdlib ``okplan`` logger's level, for code that logs through ``logging``."""
    import logging

    global _threshold
    name = level.upper() if isinstance(level, str) else level
    if name not in SPARK_LEVELS:
        raise ValueError(f"Supplied level {level} did not match one of: {','.join(SPARK_LEVELS)}")
    _threshold = SPARK_LEVELS[name]
    stdlib = {"ALL": 1, "TRACE": 5, "WARN": logging.WARNING, "FATAL": logging.CRITICAL, "OFF": logging.CRITICAL + 10}
    logging.getLogger("okplan").setLevel(stdlib.get(name, getattr(logging, name, logging.INFO)))


class Logger:
    """Structured logging: ``time`` (ISO 8601 with time zone), ``level``, ``name``, ``logger``,
    ``hostname``, ``pid``, ``msg``/``message`` and any fields you pass.

    >>> log = Logger("wordcount")
    >>> log.info("Building list")
    >>> log.info({"records": 29}, "built")
    """

    def __init__(self, name: str, level: str | None = None, stream: TextIO | None = None):
        self.name = name
        self._explicit = level is not None
        self.level = (level or os.environ.get("LOG_LEVEL") or "info").lower()
        if self.level not in LEVELS:
            raise ValueError(f"unknown log level {self.level!r}; use one of {', '.join(LEVELS)}")
        self.stream = stream
        self._host = socket.gethostname()

    def enabled(self, level: str) -> bool:
        if _threshold is not None and not self._explicit:
            return LEVELS[level] >= _threshold
        return LEVELS[level] >= LEVELS[self.level]

    def log(self, level: str, fields_or_msg: Any = None, msg: str | None = None, **extra: Any) -> None:
        if not self.enabled(level):
            return
        fields: dict[str, Any] = {}
        if isinstance(fields_or_msg, dict):
            fields.update(fields_or_msg)
        elif fields_or_msg is not None:
            msg = str(fields_or_msg) if msg is None else f"{fields_or_msg} {msg}"
        fields.update(extra)
        record = {
            "time": datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="milliseconds"),
            "level": "warn" if level == "warning" else level,
            "name": self.name,
            "logger": self.name,
            "hostname": self._host,
            "pid": os.getpid(),
            "msg": msg or "",
            "message": msg or "",
        }
        for k, v in fields.items():
            record.setdefault(k, v)
        stream = self.stream or sys.stderr
        stream.write(json.dumps(record, default=repr) + "\n")
        stream.flush()

    def trace(self, fields_or_msg: Any = None, msg: str | None = None, **extra: Any) -> None:
        self.log("trace", fields_or_msg, msg, **extra)

    def debug(self, fields_or_msg: Any = None, msg: str | None = None, **extra: Any) -> None:
        self.log("debug", fields_or_msg, msg, **extra)

    def info(self, fields_or_msg: Any = None, msg: str | None = None, **extra: Any) -> None:
        self.log("info", fields_or_msg, msg, **extra)

    def warn(self, fields_or_msg: Any = None, msg: str | None = None, **extra: Any) -> None:
        self.log("warn", fields_or_msg, msg, **extra)

    warning = warn

    def error(self, fields_or_msg: Any = None, msg: str | None = None, **extra: Any) -> None:
        self.log("error", fields_or_msg, msg, **extra)

    def fatal(self, fields_or_msg: Any = None, msg: str | None = None, **extra: Any) -> None:
        self.log("fatal", fields_or_msg, msg, **extra)
