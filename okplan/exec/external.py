"""The task runner's per-key work when it does not fit in the task's memory budget: aggregation and
grouping that spill hash-sorted runs and merge them back, external merge sort, and shuffle output,
partitions and groups that continue on disk (PySpark's ``ExternalMerger``, ``ExternalSorter``,
``ExternalGroupBy`` and ``ExternalListOfList`` are the reference).

Every function here takes the running task's ``TaskMemory``, reads its input in slices of
``memory.every`` records with the same fast loops as the in-memory path, and asks a ``Gauge`` between
slices whether to spill. Nothing spills: the result is exactly the in-memory result, in the same order.
Something spilled: runs sorted by ``portable_hash(key)`` (so keys never need to be orderable) are merged
with ``heapq.merge``; keys then come out in hash order, a key's values in arrival order.
"""

from __future__ import annotations

import heapq
import os
import pickle
from itertools import islice
from operator import itemgetter
from typing import Any, Callable, Iterable, Iterator

from ..logical.partitioners import portable_hash
from .memory import TaskMemory, current
from .spill import BATCH_BYTES, RunWriter, SpilledRecords, read_run, write_run

_first = itemgetter(0)
_END = object()
#: values of one key per spilled record, so that a huge group is written and read in pieces
GROUP_PIECE = 4096

#: ``fold(d, records)`` folds a list of records into the dict ``d`` of combiners
Fold = Callable[[dict, list], None]


def combine(sources: Iterable[tuple[Iterable, Fold]], merge: Callable[[Any, Any], Any], memory: TaskMemory,
            width: int = 0) -> Iterator[tuple[Any, Any]]:
    """``(key, combiner)`` of every record of every source, folded by that source's ``fold``.

    ``width`` says what a combiner is: 0 a value merged with ``merge`` (reduceByKey, combineByKey), 1 a
    list of values (groupByKey), n > 1 a tuple of n lists (cogroup). Lists grow past the budget on disk.

    >>> from okplan.exec.memory import TaskMemory; from okplan.exec.spill import SpillDir
    >>> def fold(d, records):
    ...     for k, v in records:
    ...         d[k] = d.get(k, 0) + v
    >>> mem = TaskMemory(1, SpillDir())               # a 1-byte budget: spills at every check
    >>> sorted(combine([([("a", 1), ("b", 2)] * 100, fold)], lambda x, y: x + y, mem))
    [('a', 100), ('b', 200)]
    >>> mem.spill_dir.remove()
    """
    gauge = memory.gauge()
    d: dict = {}
    runs: list = []
    items = 0
    for records, fold in sources:
        it = iter(records)
        while True:
            every = gauge.every
            fold(d, islice(it, every))
            # one record looked ahead says whether the input goes on (no list per slice: that cost 10%)
            head = next(it, _END)
            if head is _END:
                break
            fold(d, (head,))
            items += every + 1
            if gauge.over(items if width else len(d)):
                runs.append(_spill_combiners(d, memory, width))
                d = {}
                items = 0
                gauge.spilled()
    if not runs:
        return iter(d.items())
    if d:
        # the rest goes to disk too: while runs merge, memory is for the group being merged
        runs.append(_spill_combiners(d, memory, width))
    return _merge_runs(runs, d, merge, memory, width, gauge)


def _hash_sorted(d: dict) -> list[tuple[int, Any, Any]]:
    return sorted([(portable_hash(k), k, c) for k, c in d.items()], key=_first)


def _piece(values: list) -> int:
    """Values per spilled piece of a long list: ``GROUP_PIECE``, fewer when values are big (a piece is
    pickled whole; aim at about ``BATCH_BYTES``)."""
    per = len(pickle.dumps(values[:8], 5)) / min(8, len(values))
    return max(1, min(GROUP_PIECE, int(BATCH_BYTES / max(1.0, per))))


def _pieces(rows: list[tuple[int, Any, Any]], width: int) -> Iterator[tuple[int, Any, Any]]:
    """Rows with long value lists cut into pieces (same key, same order)."""
    if width == 0:
        yield from rows
        return
    for h, k, c in rows:
        if width == 1:
            if len(c) <= 16:
                yield h, k, c
                continue
            step = _piece(c)
            for i in range(0, len(c), step):
                yield h, k, c[i:i + step]
            continue
        if max(map(len, c)) <= 16:
            yield h, k, c
            continue
        for pos, values in enumerate(c):
            if not values:
                continue
            step = _piece(values)
            for i in range(0, len(values), step):
                yield h, k, tuple(values[i:i + step] if j == pos else [] for j in range(width))


def _spill_combiners(d: dict, memory: TaskMemory, width: int):
    rows = _hash_sorted(d)
    d.clear()  # the rows hold what the run needs; free the dict's table before writing
    memory.spills += 1
    return write_run(memory.spill_dir, _pieces(rows, width), "combine")


def _merge_runs(runs: list, d: dict, merge: Callable, memory: TaskMemory, width: int, gauge) -> Iterator:
    streams: list[Iterator] = [read_run(r) for r in runs]
    streams.append(iter(_hash_sorted(d)))
    d.clear()
    try:
        if width == 0:
            yield from _merge_values(heapq.merge(*streams, key=_first), merge)
        else:
            yield from _merge_groups(heapq.merge(*streams, key=_first), memory, width, gauge)
    finally:
        _unlink(runs)


def _merge_values(rows: Iterator, merge: Callable) -> Iterator:
    cur = None
    group: dict = {}
    for h, k, c in rows:
        if h != cur:
            if group:
                yield from group.items()
                group = {}
            cur = h
        if k in group:
            group[k] = merge(group[k], c)
        else:
            group[k] = c
    if group:
        yield from group.items()


def _merge_groups(rows: Iterator, memory: TaskMemory, width: int, gauge) -> Iterator:
    """Pieces of the same key concatenated. A piece read from a run is this merge's own list, so the
    first piece of a key is extended in place; only a group that grows past ``gauge.every`` values
    becomes a ``GroupBuffer`` that may continue on disk."""
    cur = None
    group: dict = {}
    for h, k, c in rows:
        if h != cur:
            if group:
                yield from _finish(group, width)
                group = {}
            cur = h
        have = group.get(k)
        if have is None:
            group[k] = list(c) if width > 1 else c
            continue
        if width == 1:
            if type(have) is list:
                have.extend(c)
                if len(have) > gauge.every:
                    buf = group[k] = GroupBuffer(memory, gauge)
                    buf.extend(have)
            else:
                have.extend(c)
            continue
        for pos, values in enumerate(c):
            if values:
                part = have[pos]
                if type(part) is list and len(part) + len(values) > gauge.every:
                    part = have[pos] = GroupBuffer(memory, gauge, part)
                part.extend(values)
    if group:
        yield from _finish(group, width)


def _result(part: Any) -> Any:
    return part.result() if type(part) is GroupBuffer else part


def _finish(group: dict, width: int) -> Iterator:
    if width == 1:
        for k, c in group.items():
            yield k, _result(c)
    else:
        for k, parts in group.items():
            yield k, tuple(map(_result, parts))


class GroupBuffer:
    """The values of one key while runs are merged: a list until it is over the budget, then runs on
    disk plus a list (PySpark's ``ExternalListOfList``). ``result()`` is a list or ``SpilledRecords``.

    It judges its size by the cost per value its aggregation learned (``Gauge.estimate_over``): while
    groups are merged the consumer downstream may grow too, and that growth is not this group's."""

    __slots__ = ("memory", "gauge", "values", "runs", "writer", "checked")

    def __init__(self, memory: TaskMemory, gauge, values: list | None = None):
        self.memory = memory
        self.gauge = gauge
        self.values: list = values if values is not None else []
        self.runs: list = []
        self.writer: RunWriter | None = None
        self.checked = 0

    def extend(self, values: list) -> None:
        self.values.extend(values)
        if len(self.values) - self.checked >= self.gauge.every:
            self.checked = len(self.values)
            if self.gauge.estimate_over(len(self.values)):
                if self.writer is None:
                    self.writer = RunWriter(self.memory.spill_dir, "group")
                    self.memory.escaping = True
                self.runs.append(self.writer.write(self.values))
                self.values = []
                self.checked = 0
                self.memory.spills += 1

    def result(self) -> list | SpilledRecords:
        if self.writer is None:
            return self.values
        self.writer.close()
        return SpilledRecords(self.runs, self.values)


# -- sorting -----------------------------------------------------------------------------------------------

def external_sorted(records: Iterable, key: Callable | None = None, reverse: bool = False) -> Iterator:
    """``sorted(records, key=key, reverse=reverse)`` as an iterator, merging sorted runs from disk when
    the running task's budget is exceeded (stable, as ``sorted``).

    >>> list(external_sorted([3, 1, 2]))
    [1, 2, 3]
    """
    memory = current()
    if memory is None:
        return iter(sorted(records, key=key, reverse=reverse))
    runs: list = []
    for buf, last in _filled(records, memory):
        buf.sort(key=key, reverse=reverse)
        if not last:
            runs.append(write_run(memory.spill_dir, buf, "sort"))
    if not runs:
        return iter(buf)
    return _merge_sorted(runs, buf, key, reverse)


def _merge_sorted(runs: list, buf: list, key: Callable | None, reverse: bool) -> Iterator:
    try:
        # equal keys: earlier runs first, as heapq.merge breaks ties by the stream's position
        yield from heapq.merge(*[read_run(r) for r in runs], buf, key=key, reverse=reverse)
    finally:
        _unlink(runs)


# -- output that continues on disk -----------------------------------------------------------------------

def spool(records: Iterable, memory: TaskMemory) -> list | SpilledRecords:
    """All of ``records``: a list while they fit the budget, else runs on disk plus a list."""
    runs: list = []
    writer: RunWriter | None = None
    for buf, last in _filled(records, memory):
        if not last:
            if writer is None:
                writer = RunWriter(memory.spill_dir, "part")
            runs.append(writer.write(buf))
    if writer is None:
        return buf
    writer.close()
    return SpilledRecords(runs, buf)


def _filled(records: Iterable, memory: TaskMemory) -> Iterator[tuple[list, bool]]:
    """``records`` in buffers: ``(buffer, False)`` each time a buffer grows past the task's budget (the
    caller writes it to disk before asking for the next), then ``(rest, True)``. The budget is checked
    every ``gauge.every`` records, never per record."""
    gauge = memory.gauge()
    it = iter(records)
    buf: list = []
    while True:
        had = len(buf)
        every = gauge.every
        buf.extend(islice(it, every))
        if len(buf) - had < every:
            yield buf, True
            return
        if gauge.over(len(buf)):
            yield buf, False
            memory.spills += 1
            buf = []
            gauge.spilled()


def spill_buckets(buckets: list[list], writer: RunWriter, runs: list[list]) -> None:
    """Move every non-empty bucket to a run of ``writer``'s file (its runs go to ``runs[bucket]``); the
    lists are emptied in place."""
    for b, rs in zip(buckets, runs):
        if b:
            rs.append(writer.write(b))
            b.clear()


def _unlink(runs: list) -> None:
    """Scratch runs are read once: free their disk now, not at the job's end."""
    for path in {r.path for r in runs}:
        try:
            os.unlink(path)
        except OSError:
            pass


__all__ = ["combine", "external_sorted", "spool", "spill_buckets", "GroupBuffer", "GROUP_PIECE"]
