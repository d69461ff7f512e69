"""Engine logging: the standard ``logging`` module under the ``okplan`` logger, one JSON object per line.

Engine code logs with ``get_logger(__name__)`` and passes job fields as ``extra``::

    log.info("job finished", extra={"job": job_id, "seconds": 0.12, "records": 34})

Servers (``okplan master``/``worker``) call ``configure()`` once at start; a client process configures the
``okplan`` logger only when the application has not configured logging itself (``ensure_configured``).
"""

from .formatter import LEVELS, TRACE, JsonFormatter, TextFormatter, level_number
from .setup import configure, ensure_configured, get_logger

__all__ = ["LEVELS", "TRACE", "JsonFormatter", "TextFormatter", "configure", "ensure_configured", "get_logger",
           "level_number"]
