"""A task process's heap: when Python's cyclic collector runs, and when a task's output is freed.

A worker's task process does little else than build big structures of plain data (decoded blocks,
groups, buckets), encode them and drop them. Two costs of the interpreter's defaults showed there
(py-spy and per-task CPU clocks of groupsort's and join's tasks):

- **collections.** The young generation was collected once per task whatever its threshold: every
  container a task keeps (10,000 group lists of a groupByKey map task, a join's build table) is
  scanned when its count passes the threshold, and each scan visits every value of every list, in
  the order the groups hold them, i.e. all over memory: 5-9 ms of a 60 ms map task, 20 ms of a join's
  build. ``TASK_GC_THRESHOLD`` lets a task keep ten times more containers than the local executor's
  ``JOB_GC_THRESHOLD`` before a collection: garbage cycles are still collected, in batches of at most
  that many containers (tens of MB).
- **freeing.** Dropping a map task's output (its buckets: 125,000 values in 10,000 lists) took 10 ms,
  for the same reason, and it ran between two tasks, before the process could take the next one.
  ``TaskHeap`` keeps finished outputs (a few, small enough: ``PENDING_BYTES``) and frees them while
  the process waits for work, a piece at a time, stopping as soon as a request is waiting; what it
  did not get to is freed when too much is pending.

>>> heap = TaskHeap()
>>> heap.discard([[1, 2], [3]], nbytes=64)
>>> heap.pending_bytes
64
>>> heap.tidy(lambda: False); heap.pending_bytes
0
"""

from __future__ import annotations

import gc
import sys
from collections import deque
from typing import Any, Callable, Iterator

from ..local import JOB_GC_THRESHOLD

#: the young-generation threshold of a task process (see the module's docstring)
TASK_GC_THRESHOLD = 10 * JOB_GC_THRESHOLD
#: outputs held for freeing later, at most (their encoded bytes; decoded they take a few times more)
PENDING_BYTES = 16 * 1024 * 1024
PENDING_OUTPUTS = 4
#: items of a list freed between two looks at whether a request is waiting (about a millisecond)
PIECE = 1024


def tune_collector() -> None:
    """Set the collector of this task process, once, at its start: what it inherited by fork is left
    out of every collection (``gc.freeze``), and the young generation is collected in big batches."""
    gc.freeze()
    gc.set_threshold(TASK_GC_THRESHOLD, *gc.get_threshold()[1:])


class TaskHeap:
    """The outputs of finished tasks this process has yet to free."""

    def __init__(self) -> None:
        self._pending: deque[tuple[Any, int]] = deque()
        self.pending_bytes = 0
        self._freeing: Iterator[None] | None = None
        self._held: tuple[Any, int] | None = None

    def hold(self, output: Any, nbytes: int) -> None:
        """``output`` is the task just run's: its reply still needs it; ``release`` lets it go."""
        self._held = (output, nbytes)

    def release(self) -> None:
        """The held output's reply is on its way: free it while waiting for work, or now if it is big."""
        if self._held is not None:
            output, nbytes = self._held
            self._held = None
            self.discard(output, nbytes)

    def discard(self, output: Any, nbytes: int) -> None:
        """``output`` (a finished task's, ``nbytes`` encoded) is no longer needed: free it later, or
        now when it is big or enough is pending already."""
        if nbytes > PENDING_BYTES:
            del output
            return
        self._pending.append((output, nbytes))
        self.pending_bytes += nbytes
        while self.pending_bytes > PENDING_BYTES or len(self._pending) > PENDING_OUTPUTS:
            self._drop_oldest()

    def tidy(self, waiting: Callable[[], bool]) -> None:
        """Free pending outputs a piece at a time until all are gone or ``waiting()`` says a request
        arrived (the process has nothing else to do meanwhile)."""
        while self._freeing is not None or self._pending:
            if self._freeing is None:
                output, nbytes = self._pending.popleft()
                self.pending_bytes -= nbytes
                self._freeing = _pieces(output)
                del output
            for _ in self._freeing:
                if waiting():
                    return
            self._freeing = None
            if waiting():
                return

    def _drop_oldest(self) -> None:
        if self._freeing is not None:
            for _ in self._freeing:
                pass
            self._freeing = None
            return
        _, nbytes = self._pending.popleft()
        self.pending_bytes -= nbytes


def _pieces(output: Any) -> Iterator[None]:
    """Free ``output`` (a task's value: buckets, a partition, any object) in pieces, yielding between
    them. Only lists nothing else refers to are emptied piecewise; anything else is dropped whole, so
    no object anybody can still see is ever changed."""
    lists = [output]
    del output
    while lists:
        top = lists.pop()
        # two references: ``top`` and getrefcount's argument; any other holder keeps it intact
        if type(top) is not list or sys.getrefcount(top) > 2:
            del top
            yield
            continue
        while top:
            if len(top) > PIECE:
                del top[-PIECE:]
                yield
                continue
            item = top.pop()
            if type(item) is list:
                lists.append(item)
            del item
        del top
        yield
