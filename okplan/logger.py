"""``Logger``: one JSON object per line, the seed's logger with a threshold from ``LOG_LEVEL``."""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
from typing import Any, TextIO

LEVELS = {"trace": 5, "debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40, "fatal": 50}


class Logger:
    """Structured logging: ``time`` (ISO 8601 with time zone), ``level``, ``name``, ``logger``,
    ``hostname``, ``pid``, ``msg``/``message`` and any fields you pass.

    >>> log = Logger("wordcount")
    >>> log.info("Building list")
    >>> log.info({"records": 29}, "built")
    """

    def __init__(self, name: str, level: str | None = None, stream: TextIO | None = None):
        self.name = name
        self.level = (level or os.environ.get("LOG_LEVEL") or "info").lower()
        if self.level not in LEVELS:
            raise ValueError(f"unknown log level {self.level!r}; use one of {', '.join(LEVELS)}")
        self.stream = stream
        self._host = socket.gethostname()

    def enabled(self, level: str) -> bool:
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
