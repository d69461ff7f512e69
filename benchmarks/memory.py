"""Peak resident memory of processes (Linux ``/proc``), for the per-process memory table.

The benchmark process runs every engine in turn, so its peak is reset before each engine
(``clear_refs`` 5 resets ``VmHWM``), making each engine's client peak its own.
"""

from __future__ import annotations

import os
from typing import Any


def peak_rss(pid: int) -> int | None:
    """Peak resident set size of ``pid`` in bytes (``VmHWM``), or None where /proc does not tell."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak(pid: int | None = None) -> bool:
    """Start measuring ``pid``'s peak afresh (default: this process); False where not possible."""
    try:
        with open(f"/proc/{pid or os.getpid()}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def engine_peaks(engine: Any) -> dict[str, int | None]:
    """Peak memory of the client and, for a local cluster, of its master, workers and Redis."""
    peaks: dict[str, int | None] = {"client": peak_rss(os.getpid())}
    executor = getattr(getattr(engine, "ctx", None), "executor", None)
    if executor is not None and hasattr(executor, "worker_pids"):
        peaks["master"] = peak_rss(executor.master_pid)
        for i, pid in enumerate(executor.worker_pids()):
            peaks[f"worker {i}"] = peak_rss(pid)
        peaks["redis"] = peak_rss(executor.redis_pid)
    return peaks
