"""Keeping processes alive: a process that dies unexpectedly is started again, with backoff, and
the restart is logged. ``local-cluster`` keeps its workers this way and ``okplan worker`` keeps its
supervisor.

A process that exits with code 0 (asked to stop) or ``EXIT_NO_RESTART`` (refused by the master, bad
configuration: a restart would fail the same way) stays down. One that dies again soon after its
start waits longer each time (0.1 s doubling up to 10 s); one that ran a while restarts at once.

>>> kept = KeptProcess(lambda: subprocess.Popen(cmd), "okplan worker")    # doctest: +SKIP
>>> kept.check()              # call now and then: restarts the process if it died   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from typing import Callable

from ..pool import ChildDeath

#: exit code of a worker that must not be restarted (the master refused it, or its configuration is bad)
EXIT_NO_RESTART = 2

#: a process that lived this long before dying is restarted at once
_HEALTHY_AFTER = 10.0
_FIRST_BACKOFF = 0.1
_MAX_BACKOFF = 10.0


def describe_exit(returncode: int) -> str:
    """``exited with code 1`` or ``was killed by signal SIGKILL``."""
    return ChildDeath.of(returncode).describe(hints=False)


class KeptProcess:
    """One process, restarted by ``check()`` when it died unexpectedly."""

    def __init__(self, start: Callable[[], subprocess.Popen], what: str, log: logging.Logger | None = None):
        self._start = start
        self.what = what
        self.log = log or logging.getLogger("okplan.keeper")
        self.proc = start()
        self.started = time.monotonic()
        self.restarts = 0
        self.quick_deaths = 0
        self.restart_at: float | None = None
        self.gave_up = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check(self) -> bool:
        """Restart the process if it died and its backoff has passed; True when it was restarted."""
        if self.gave_up or self.proc.poll() is None:
            return False
        now = time.monotonic()
        if self.restart_at is None:
            rc = self.proc.returncode
            if rc in (0, EXIT_NO_RESTART):
                self.gave_up = True
                self.log.warning("%s (pid %d) %s; not restarting it", self.what, self.proc.pid, describe_exit(rc))
                return False
            self.quick_deaths = self.quick_deaths + 1 if now - self.started < _HEALTHY_AFTER else 0
            delay = 0.0 if self.quick_deaths == 0 else min(_MAX_BACKOFF, _FIRST_BACKOFF * 2 ** (self.quick_deaths - 1))
            self.restart_at = now + delay
            self.log.warning("%s (pid %d) %s; restarting it%s", self.what, self.proc.pid, describe_exit(rc),
                             f" in {delay:.1f}s" if delay else "")
        if now < self.restart_at:
            return False
        self.proc = self._start()
        self.started = time.monotonic()
        self.restart_at = None
        self.restarts += 1
        self.log.info("%s restarted (pid %d)", self.what, self.proc.pid)
        return True

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; no restart afterwards."""
        self.gave_up = True
        p = self.proc
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


__all__ = ["KeptProcess", "EXIT_NO_RESTART", "describe_exit"]
