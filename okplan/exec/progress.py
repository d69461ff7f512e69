"""Live progress of a running job: one tqdm line per stage (``tqdm.auto``: a widget in Jupyter), with
tasks done of total and records so far, once the job has run for half a second.

Shown when stderr is a terminal (or Jupyter), never in pipes, log files or tests, unless
``OKPLAN_PROGRESS=1``; ``OKPLAN_PROGRESS=0`` turns it off. When off, executors get ``None`` and pay
nothing per task.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any

#: seconds a job runs before its progress shows (short jobs print nothing)
DELAY = 0.5

_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


def progress_wanted() -> bool:
    """``OKPLAN_PROGRESS`` if set, else whether stderr is a terminal or a Jupyter kernel's stream.

    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"OKPLAN_PROGRESS": "0"}):
    ...     progress_wanted()
    False
    """
    env = (os.environ.get("OKPLAN_PROGRESS") or "").strip().lower()
    if env in _OFF:
        return False
    if env in _ON:
        return True
    stream = sys.stderr
    global _asked
    if _asked[0] is not stream:
        # asked once per stream, not per job: an isatty is a system call, a tiny job's worth of time
        _asked = (stream, _isatty(stream) or type(stream).__module__.startswith("ipykernel"))
    return _asked[1]


#: the last stderr asked about and the answer (a replaced stderr is asked again)
_asked: tuple[Any, bool] = (None, False)


def _isatty(stream: Any) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


class JobProgress:
    """The bars of one job. ``update`` after every task (local) or progress message (cluster)."""

    def __init__(self, job: str, delay: float = DELAY):
        from tqdm.auto import tqdm  # noqa: PLC0415 - imported only when progress is shown

        self._tqdm = tqdm
        self.job = job
        self.delay = delay
        self.started = time.monotonic()
        self.bars: dict[int, Any] = {}
        self.closed: set[int] = set()
        # a terminal that reports no size (0 x 0) would get no bars from tqdm: fall back to 80 x 24
        self.size = tuple(shutil.get_terminal_size()) if _isatty(sys.stderr) else (None, None)

    def update(self, stage_id: int, done: int, total: int, records: int) -> None:
        """Stage ``stage_id`` has ``done`` of ``total`` tasks finished and produced ``records``."""
        if stage_id in self.closed:
            return
        bar = self.bars.get(stage_id)
        if bar is None:
            if time.monotonic() - self.started < self.delay:
                return
            bar = self.bars[stage_id] = self._tqdm(total=total, desc=f"Stage {stage_id}", unit="task",
                                                   leave=False, file=sys.stderr, ncols=self.size[0],
                                                   nrows=self.size[1])
            bar.set_postfix_str(f"{records:,} records", refresh=False)
            bar.update(done)
            bar.refresh()
        if bar.total != total:
            bar.total = total
        bar.set_postfix_str(f"{records:,} records", refresh=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            self.closed.add(stage_id)
            del self.bars[stage_id]

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def job_progress(job: str) -> JobProgress | None:
    """A ``JobProgress`` when progress is wanted, else None."""
    return JobProgress(job) if progress_wanted() else None
