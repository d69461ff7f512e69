"""A task's memory budget: how big it is, how it is measured, and when a structure must spill.

The budget (``OKPLAN_TASK_MEMORY`` or ``Context(task_memory=...)``, default ``512m`` as PySpark's
``spark.python.worker.memory``) bounds what one task holds in memory: aggregation dicts, groups,
sort buffers, shuffle buckets. Memory is measured the cheap way PySpark measures it: the process's
resident set size, read from ``/proc/self/statm`` every few hundred records, never per record.

Python rarely gives freed memory back to the system, so after a spill the resident size stays high
while the freed pages are reused. A ``Gauge`` therefore learns, at its first spill, how many bytes one
item of its structure costs, and from then on compares ``items * bytes_per_item`` with the budget;
resident growth past the last spill still counts, so memory nobody reuses is not ignored.

>>> parse_size("256m"), parse_size("2g"), parse_size(1024)
(268435456, 2147483648, 1024)
"""

from __future__ import annotations

import contextvars
import gc
import os
import resource
import sys
import tempfile

from ..errors import ConfigurationError

DEFAULT_TASK_MEMORY = "512m"
#: containers a task may make with the collector paused (decoded blocks, unpickled spill batches)
#: before what it holds is left out of collections until it ends (``TaskMemory.made``)
FREEZE_AFTER = 1_000_000
#: no structure item (a pair, a value in a group, a dict entry) costs less than this many bytes
MIN_ITEM_BYTES = 32
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: str | int, what: str = "OKPLAN_TASK_MEMORY") -> int:
    """Bytes of a size written the way people write it: ``512m``, ``2g``, ``64k``, ``1.5g`` or an int.

    >>> parse_size("64k"), parse_size("1.5G")
    (65536, 1610612736)
    """
    if isinstance(value, bool):
        raise ConfigurationError(f"{what} must be a size like 256m or 2g, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigurationError(f"{what} must not be negative, got {value}")
        return value
    text = str(value).strip().lower().removesuffix("ib").removesuffix("b") if isinstance(value, str) else ""
    unit = text[-1:] if text[-1:] in _UNITS else ""
    number = text[:-1] if unit else text
    try:
        n = float(number)
    except ValueError:
        raise ConfigurationError(f"{what} must be a size like 256m or 2g, got {value!r}") from None
    if n < 0:
        raise ConfigurationError(f"{what} must be a size like 256m or 2g, not negative: {value!r}")
    return int(n * _UNITS[unit])


def task_memory(option: str | int | None = None) -> int:
    """The budget per task in bytes: the option if given, else ``OKPLAN_TASK_MEMORY``, else 512m."""
    if option is not None:
        return parse_size(option, "task_memory")
    return parse_size(os.environ.get("OKPLAN_TASK_MEMORY") or DEFAULT_TASK_MEMORY)


def local_dir() -> str:
    """Where spill files go: ``OKPLAN_LOCAL_DIR``, else the system's temporary directory."""
    return os.environ.get("OKPLAN_LOCAL_DIR") or tempfile.gettempdir()


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_statm_fd: int | None = None


def rss() -> int:
    """This process's resident set size in bytes (one ``pread`` of ``/proc/self/statm``, ~1 µs).

    Where there is no ``/proc`` it falls back to the peak resident size, which can only over-estimate.
    """
    global _statm_fd
    try:
        if _statm_fd is None:
            _statm_fd = os.open("/proc/self/statm", os.O_RDONLY)
        return int(os.pread(_statm_fd, 64, 0).split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _forget_statm_after_fork() -> None:
    # a forked child reading the parent's /proc/self/statm descriptor would measure the parent
    global _statm_fd
    _statm_fd = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_statm_after_fork)


class Gauge:
    """Says when one in-memory structure (a dict of combiners, a sort buffer, buckets) must spill.

    >>> g = Gauge(1 << 20)
    >>> g.over(10), g.over(10_000_000)
    (False, True)
    """

    __slots__ = ("limit", "base", "per_item", "every", "cap", "last")

    def __init__(self, limit: int, cap: int = 1024):
        self.limit = limit
        #: resident size when measuring started: read at the first check, so small inputs never read it
        self.base = -1
        self.per_item = MIN_ITEM_BYTES
        #: records until the next check: starts small and doubles up to ``cap`` while each check finds
        #: little growth, halves when records are big (a check per 1,024 one-megabyte records is too late)
        self.every = min(16, cap)
        self.cap = cap
        self.last = -1

    def over(self, items: int) -> bool:
        """True when a structure of ``items`` items is over the budget (check every ``check_every``)."""
        if items * self.per_item > self.limit:
            return True
        now = rss()
        if now < self.base or self.base < 0:
            # growth counts from the lowest point seen: memory freed meanwhile (a finished task's, a
            # structure written to disk) would otherwise let this one grow by as much past the budget
            self.base = now
        grown = now - self.base
        if grown > self.limit:
            if items:
                # learn what an item costs: this structure is most of what grew since the last spill
                self.per_item = max(self.per_item, grown // items)
            return True
        if self.last >= 0 and now - self.last > self.limit >> 4:
            self.every = max(1, self.every >> 1)
        elif self.every < self.cap:
            self.every = min(self.cap, self.every << 1)
        self.last = now
        return False

    def learn(self, record: object) -> None:
        """Take the size of one held record (and of what a tuple or list of it holds) as the least an
        item costs: a process that reuses memory freed by an earlier task shows no resident growth, and
        by the default cost alone a buffer of records would grow to several budgets before it spilled."""
        size = sys.getsizeof(record) + 8  # and its slot in the holding list
        if type(record) is tuple or type(record) is list:
            size += sum(map(sys.getsizeof, record))
        self.per_item = max(self.per_item, size)

    def estimate_over(self, items: int) -> bool:
        """``over`` by the learned cost per item alone: for a structure that grows while others (a
        downstream list, say) also grow, whose resident growth is not its own."""
        return items * self.per_item > self.limit

    def spilled(self) -> None:
        """The structure went to disk: measure growth from here (freed pages are reused, not returned)."""
        self.base = self.last = rss()


def check_every(budget: int) -> int:
    """Records between two checks: rarer for big budgets (a check costs ~1 µs), often for tiny ones so
    the overshoot stays proportionate to the budget."""
    return max(16, min(1024, budget >> 14))


class TaskMemory:
    """The budget of the running task and where it spills (a ``SpillDir`` owned by the job).

    ``spills`` counts the task's spills; its spill directory's ``bytes_written``, the bytes.

    >>> from okplan.exec.spill import SpillDir
    >>> TaskMemory(parse_size("256m"), SpillDir()).every
    1024
    """

    __slots__ = ("budget", "spill_dir", "every", "spills", "escaping", "paused", "frozen")

    def __init__(self, budget: int, spill_dir):
        self.budget = budget
        self.spill_dir = spill_dir
        self.every = check_every(budget)
        self.spills = 0
        #: True once a group streamed from disk exists: results must be detached before the task ends
        self.escaping = False
        #: containers made with the collector paused; whether this task froze the heap (and whether the
        #: process had frozen objects of its own before: a worker's slot freezes what its fork inherited)
        self.paused = 0
        self.frozen: bool | None = None

    def gauge(self) -> Gauge:
        return Gauge(self.budget, self.every)

    def made(self, containers: int) -> None:
        """``containers`` were made with the collector paused (okplan's own loops: records decoded,
        groups partitioned), none of them garbage. Past ``FREEZE_AFTER`` in this task, everything alive
        is frozen (``gc.freeze``, O(1)) after each such loop, until the task ends (``thaw``): a big task's
        records, groups and dicts are never garbage, yet every full collection rescanned them all while
        the heap grew (it doubled a cluster groupByKey's reduce). Garbage is still freed by reference
        counting meanwhile; only cycles wait for the task's end."""
        self.paused += containers
        if self.paused < FREEZE_AFTER:
            return
        if self.frozen is None:
            self.frozen = gc.get_freeze_count() > 0
        gc.freeze()

    def thaw(self) -> None:
        """The task ended: what it froze is collectable again (what the process froze before, frozen
        again after a collection)."""
        if self.frozen is None:
            return
        gc.unfreeze()
        if self.frozen:
            gc.collect()
            gc.freeze()
        self.frozen = None
        self.paused = 0


_current: contextvars.ContextVar[TaskMemory | None] = contextvars.ContextVar("okplan_task_memory", default=None)


def current() -> TaskMemory | None:
    """The memory of the task this thread runs (None outside a task)."""
    return _current.get()


class running:
    """Make ``memory`` the running task's while the block runs (a class, not a contextlib generator:
    entered once per task, and tiny tasks are a few microseconds).

    >>> from okplan.exec.spill import SpillDir
    >>> with running(TaskMemory(1, SpillDir())) as m:
    ...     current() is m
    True
    """

    __slots__ = ("memory", "token")

    def __init__(self, memory: TaskMemory):
        self.memory = memory

    def __enter__(self) -> TaskMemory:
        self.token = _current.set(self.memory)
        return self.memory

    def __exit__(self, *exc: object) -> None:
        _current.reset(self.token)


__all__ = ["parse_size", "task_memory", "local_dir", "rss", "Gauge", "TaskMemory", "check_every", "current",
           "running", "DEFAULT_TASK_MEMORY"]
