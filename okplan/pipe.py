"""``DataSet.pipe``: a partition's records through an external command, one process per partition.

As PySpark: records are written to the command's standard input as ``str(x)`` lines by a thread
(so a command that writes while it reads never deadlocks), its standard output lines are the new
records, decoded as UTF-8 without their newline. The command inherits the worker's environment plus
``env`` (PySpark gives it ``env`` alone). Its standard error is read by okplan, and its last lines go
into the error when ``checkCode`` is set and the command exits non-zero.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
from collections import deque
from typing import Callable, Iterable, Iterator

from .errors import OkplanError

#: lines of the command's stderr quoted in the error of a failed command
_STDERR_LINES = 5


class PipeCommandError(OkplanError, RuntimeError):
    """The command of ``pipe(..., checkCode=True)`` exited with a non-zero code (PySpark raises a
    ``RuntimeError`` subclass, ``PIPE_FUNCTION_EXITED``, for the same)."""


def pipe_fn(command: str, env: dict[str, str], check_code: bool) -> Callable[[int, Iterable], Iterator[str]]:
    argv = shlex.split(command)

    def run_pipe(_i: int, it: Iterable) -> Iterator[str]:
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        feed_error: list[BaseException] = []
        stderr_tail: deque[bytes] = deque(maxlen=_STDERR_LINES)

        def feed() -> None:
            try:
                for x in it:
                    proc.stdin.write((str(x).rstrip("\n") + "\n").encode("utf-8"))  # type: ignore[union-attr]
            except BrokenPipeError:
                pass  # the command stopped reading (head, grep -m): its output still counts
            except BaseException as e:  # an error of an upstream function: fail the task with it
                feed_error.append(e)
            finally:
                try:
                    proc.stdin.close()  # type: ignore[union-attr]
                except OSError:
                    pass

        def drain_stderr() -> None:
            for line in proc.stderr:  # type: ignore[union-attr]
                stderr_tail.append(line)

        threads = [threading.Thread(target=feed, daemon=True), threading.Thread(target=drain_stderr, daemon=True)]
        for t in threads:
            t.start()
        finished = False
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                yield line.rstrip(b"\n").decode("utf-8")
            finished = True
        finally:
            # closed early (take) or failed upstream: nobody reads the command's output any more, so
            # waiting for it could block forever
            if (not finished or feed_error) and proc.poll() is None:
                proc.kill()
            code = proc.wait()
            for t in threads:
                t.join()
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]
        if feed_error:
            raise feed_error[0]
        if check_code and code:
            tail = b"".join(stderr_tail).decode("utf-8", "replace").strip()
            raise PipeCommandError(f"Pipe function `{command}` exited with error code {code}"
                                   + (f"; its stderr ended with:\n{tail}" if tail else ""))

    return run_pipe


__all__ = ["pipe_fn", "PipeCommandError"]
