"""``Logger``: the seed's structured logger, a face over the standard ``logging`` module and okplan's
one JSON formatter (``okplan.log``), with its threshold from ``LOG_LEVEL``."""

from __future__ import annotations

import logging
import os
from typing import Any, TextIO

from .log.formatter import LEVELS, JsonFormatter, level_number
from .log.setup import _StderrHandler


class Logger:
    """Structured logging: one JSON object per line with ``time`` (ISO 8601 with time zone), ``level``,
    ``name``, ``hostname``, ``pid``, ``msg`` and any fields you pass.

    >>> log = Logger("wordcount")                           # doctest: +SKIP
    >>> log.info("Building list")                           # doctest: +SKIP
    >>> log.info({"records": 29}, "built")                  # doctest: +SKIP
    """

    def __init__(self, name: str, level: str | None = None, stream: TextIO | None = None):
        self.name = name
        self.level = (level or os.environ.get("LOG_LEVEL") or "info").lower()
        if self.level not in LEVELS:
            raise ValueError(f"unknown log level {self.level!r}; use one of trace, debug, info, warn, error, fatal")
        self.stream = stream
        # a logger of its own, outside logging's registry: the seed's Logger has a threshold and a
        # stream per instance, and two Loggers of the same name must not share them
        self._logger = logging.Logger(name, level_number(self.level))
        self._logger.propagate = False
        handler = _StderrHandler(stream)
        handler.setFormatter(JsonFormatter())
        self._logger.addHandler(handler)

    def enabled(self, level: str) -> bool:
        """True when a record at ``level`` would be written.

        >>> Logger("t", level="warn").enabled("info")
        False
        """
        return level_number(level) >= level_number(self.level)

    def log(self, level: str, fields_or_msg: Any = None, msg: str | None = None, **extra: Any) -> None:
        """Write one record at ``level``: a message, or a dict of fields and a message.

        >>> Logger("t").log("info", {"rows": 3}, "loaded")  # doctest: +SKIP
        """
        levelno = level_number(level)
        if not self._logger.isEnabledFor(levelno):
            return
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
