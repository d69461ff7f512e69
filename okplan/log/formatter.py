"""The one JSON formatter (and its human-readable sibling) every okplan process logs through."""

from __future__ import annotations

import datetime
import json
import logging
import os
import socket
from typing import Any

#: the seed's level names; ``trace`` is below ``logging.DEBUG``
TRACE = 5
logging.addLevelName(TRACE, "TRACE")
LEVELS = {"trace": TRACE, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "warning": logging.WARNING, "error": logging.ERROR, "fatal": logging.CRITICAL,
          "critical": logging.CRITICAL}
_NAMES = {TRACE: "trace", logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
          logging.ERROR: "error", logging.CRITICAL: "fatal"}

#: attributes every LogRecord has; anything else on a record came from ``extra`` and is a field
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def level_number(level: str | int) -> int:
    """``"debug"`` -> 10; a clear ``ValueError`` for a name that is not a level.

    >>> level_number("WARN")
    30
    """
    if isinstance(level, int):
        return level
    try:
        return LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of trace, debug, info, warn, error, fatal") from None


def level_name(levelno: int) -> str:
    return _NAMES.get(levelno) or logging.getLevelName(levelno).lower()


def threshold_name(levelno: int) -> str:
    """The seed's name of the highest level at or below ``levelno`` (a threshold of 1 lets trace through).

    >>> threshold_name(1), threshold_name(30), threshold_name(100)
    ('trace', 'warn', 'fatal')
    """
    named = [n for n in sorted(_NAMES) if n <= levelno]
    return _NAMES[named[-1]] if named else "trace"


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record carries: ``extra`` attributes, and the seed Logger's ``fields`` dict."""
    out: dict[str, Any] = {}
    for k, v in record.__dict__.items():
        if k not in _STANDARD and k != "fields":
            out[k] = v
    fields = record.__dict__.get("fields")
    if isinstance(fields, dict):
        for k, v in fields.items():
            out.setdefault(k, v)
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601 with time zone), ``level``, ``name``, ``hostname``,
    ``pid``, ``msg``, then the record's fields (``job``, ``stage``, ``task``, ``worker``...).

    >>> import logging; r = logging.LogRecord("okplan.master", 20, "", 0, "job finished", (), None)
    >>> r.job = "ab12"; sorted(json.loads(JsonFormatter().format(r)))
    ['hostname', 'job', 'level', 'msg', 'name', 'pid', 'time']
    """

    def __init__(self) -> None:
        super().__init__()
        self.hostname = socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds"),
            "level": level_name(record.levelno),
            "name": record.name,
            "hostname": self.hostname,
            "pid": record.process if record.process is not None else os.getpid(),
            "msg": record.getMessage(),
        }
        for k, v in record_fields(record).items():
            out.setdefault(k, v)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=repr)


class TextFormatter(logging.Formatter):
    """``--log-format text``: ``12:01:02.345 info  okplan.master  job finished  job=ab12 seconds=0.12``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        fields = " ".join(f"{k}={v}" for k, v in record_fields(record).items())
        line = f"{stamp} {level_name(record.levelno):<5} {record.name}  {record.getMessage()}"
        if fields:
            line += "  " + fields
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line
