"""Dying with the parent: the processes ``local-cluster`` starts must not outlive the client.

Two mechanisms, because neither covers every case: on Linux the kernel sends SIGTERM when the parent
goes (``PR_SET_PDEATHSIG``, set between fork and exec), and every okplan process started with
``--parent-pid`` also polls that pid, which works on any OS and whichever thread started it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

from ..spill import pid_alive

_PR_SET_PDEATHSIG = 1
try:  # loaded here, not after fork, where loading a library could deadlock
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True) \
        if sys.platform.startswith("linux") else None
except OSError:
    _libc = None


def die_with_parent() -> None:
    """``preexec_fn`` for ``subprocess.Popen``: SIGTERM this child when the parent thread dies."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def pdeathsig_is_safe() -> bool:
    """PDEATHSIG fires when the *thread* that forked exits, so use it only from the main thread."""
    return _libc is not None and threading.current_thread() is threading.main_thread()


def watch_parent(pid: int | None, also_kill: list[int] | None = None, interval: float = 0.5) -> None:
    """Exit this process (after killing ``also_kill``) once ``pid`` is gone."""
    if not pid:
        return

    direct = os.getppid() == pid

    def watch() -> None:
        while True:
            time.sleep(interval)
            # a direct child is re-parented the moment its parent dies, even if the pid is reused later
            if not pid_alive(pid) or direct and os.getppid() != pid:
                for other in also_kill or ():
                    try:
                        os.kill(other, signal.SIGKILL)
                    except OSError:
                        pass
                os._exit(0)

    threading.Thread(target=watch, name="okplan-parent-watch", daemon=True).start()
