"""``Logger``: the seed's structured logger, a face over the standard ``logging`` module and okplan's
one JSON formatter (``okplan.log``), with its threshold from ``LOG_LEVEL``."""

from __future__ import annotations

import logging
import os
from typing import Any, TextIO

from .log.formatter import LEVELS, JsonFormatter, level_number
from .log.setup import _StderrHandler

#: PySpark's ``setLogLevel`` names -> okplan thresholds (ALL lets everything through, OFF nothing)
SPARK_LEVELS = {"ALL": 0, "TRACE": 5, "DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40, "FATAL": 50, "OFF": 100}

#: a process-wide threshold set by ``Context.setLogLevel``; wins over ``LOG_LEVEL`` for loggers
#: created without an explicit level
_threshold: int | None = None


def set_threshold(level: str) -> None:
    """Set the process-wide threshold from one of PySpark's level names (case-insensitive); also the
    stdlib ``okplan`` logger's level, for code that logs through ``logging``."""
    global _threshold
    name = level.upper() if isinstance(level, str) else level
    if name not in SPARK_LEVELS:
        raise ValueError(f"Supplied level {level} did not match one of: {','.join(SPARK_LEVELS)}")
    _threshold = SPARK_LEVELS[name]
    stdlib = {"ALL": 1, "TRACE": 5, "WARN": logging.WARNING, "FATAL": logging.CRITICAL, "OFF": logging.CRITICAL + 10}
    logging.getLogger("okplan").setLevel(stdlib.get(name, getattr(logging, name, logging.INFO)))


class Logger:
    """Structured logging: one JSON object per line with ``time`` (ISO 8601 with time zone), ``level``,
    ``name``, ``hostname``, ``pid``, ``msg`` and any fields you pass.

    >>> log = Logger("wordcount")
    >>> log.info("Building list")
    >>> log.info({"records": 29}, "built")
    """

    def __init__(self, name: str, level: str | None = None, stream: TextIO | None = None):
        self.name = name
        self._explicit = level is not None
        self.level = (level or os.environ.get("LOG_LEVEL") or "info").lower()
        if self.level not in LEVELS:
            raise ValueError(f"unknown log level {self.level!r}; use one of trace, debug, info, warn, error, fatal")
        self.stream = stream
        # a logger of its own, outside logging's registry: the seed's Logger has a threshold and a
        # stream per instance, and two Loggers of the same name must not share them
        # (its own level lets everything through: ``enabled`` decides, as setLogLevel may change it)
        self._logger = logging.Logger(name, 1)
        self._logger.propagate = False
        handler = _StderrHandler(stream)
        handler.setFormatter(JsonFormatter())
        self._logger.addHandler(handler)

    def enabled(self, level: str) -> bool:
        """True when a record at ``level`` would be written (``Context.setLogLevel`` wins over
        ``LOG_LEVEL`` for a Logger made without a level).

        >>> Logger("t", level="warn").enabled("info")
        False
        """
        if _threshold is not None and not self._explicit:
            return level_number(level) >= _threshold
        return level_number(level) >= level_number(self.level)

    def log(self, level: str, fields_or_msg: Any = None, msg: str | None = None, **extra: Any) -> None:
        """Write one record at ``level``: a message, or a dict of fields and a message.

        >>> Logger("t").log("info", {"rows": 3}, "loaded")  # doctest: +SKIP
        """
        if not self.enabled(level):
            return
        levelno = level_number(level)
        fields: dict[str, Any] = {}
        if isinstance(fields_or_msg, dict):
            fields.update(fields_or_msg)
        elif fields_or_msg is not None:
            msg = str(fields_or_msg) if msg is None else f"{fields_or_msg} {msg}"
        fields.update(extra)
        self._logger.log(levelno, "%s", msg or "", extra={"fields": fields})

    def trace(self, fields_or_msg: Any = None, msg: str | None = None, **extra: Any) -> None:
        """Log at trace (below debug)."""
        self.log("trace", fields_or_msg, msg, **extra)

    def debug(self, fields_or_msg: Any = None, msg: str | None = None, **extra: Any) -> None:
        """Log at debug."""
        self.log("debug", fields_or_msg, msg, **extra)

    def info(self, fields_or_msg: Any = None, msg: str | None = None, **extra: Any) -> None:
        """Log at info: ``log.info("Building list")``."""
        self.log("info", fields_or_msg, msg, **extra)

    def warn(self, fields_or_msg: Any = None, msg: str | None = None, **extra: Any) -> None:
        """Log at warn."""
        self.log("warn", fields_or_msg, msg, **extra)

    warning = warn

    def error(self, fields_or_msg: Any = None, msg: str | None = None, **extra: Any) -> None:
        """Log at error."""
        self.log("error", fields_or_msg, msg, **extra)

    def fatal(self, fields_or_msg: Any = None, msg: str | None = None, **extra: Any) -> None:
        """Log at fatal."""
        self.log("fatal", fields_or_msg, msg, **extra)
