"""The task runner's per-key work when it does not fit in the task's memory budget: aggregation and
grouping that spill hash-partitioned files and merge them back one sub-partition at a time, and
shuffle output, partitions and groups that continue on disk (PySpark's ``ExternalMerger``,
``ExternalGroupBy`` and ``ExternalListOfList`` are the reference; the external merge sort is
``external_sort``).

Every function here takes the running task's ``TaskMemory``, reads its input in slices of
``memory.every`` records with the same fast loops as the in-memory path, and asks a ``Gauge`` between
slices whether to spill. Nothing spills: the result is exactly the in-memory result, in the same order.
Something spilled: keys come out sub-partition by sub-partition, a key's values in arrival order.
"""

from __future__ import annotations

import os
import pickle
from functools import partial
from itertools import chain, islice
from typing import Any, Callable, Iterable, Iterator

from .memory import Gauge, TaskMemory
from .spill import BATCH_BYTES, STREAM_BATCH, Run, RunWriter, SpilledRecords, paused_gc, read_batches

_END = object()
#: values of one key per spilled record, so that a huge group is written and read in pieces
GROUP_PIECE = 4096
#: a list of more values than this is cut into pieces when spilled (a batch of rows is pickled whole, and
#: its number of rows is learned from the rows before it)
LONG = 64
#: sub-partitions of one spill. A prime, as PySpark's 59: the keys of one shuffle partition share
#: ``hash(key) % n`` and must still spread over all of them
PARTITIONS = 59
#: a sub-partition still over the budget when merged is partitioned again, at most this deep
#: (59**3 sub-partitions); past it, or when one key is most of it, big groups stream from disk
MAX_LEVEL = 3
#: a spill keeps sub-partitions in memory up to this share of the budget (the biggest go to disk), and
#: spills more of them only when the kept ones grow past ``KEEP_HIGH`` of it: a record of a kept one is
#: never written nor read back, and one of a spilled one is written once whenever it is spilled
KEEP = 0.75
KEEP_HIGH = 0.9

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
    merger = _Merger(memory, merge, width, memory.gauge(), 0, {})
    for records, fold in sources:
        merger.fill(records, fold)
    return merger.items()


class _Merger:
    """One level of PySpark's ``ExternalMerger``, as a hybrid hash aggregation: a dict of combiners that,
    past the budget, is split into ``PARTITIONS`` dicts, one per sub-partition (by a hash of the key
    salted with the level), of which only enough go to disk, the biggest first, to bring what stays
    to ``KEEP`` of the budget. From then on each record folds into its sub-partition's dict; whenever the
    budget is reached again the spilled sub-partitions' dicts are written (and more kept ones spill if
    the kept ones grew past ``KEEP_HIGH``). At the end the kept dicts come out as they are, never written
    or read; each spilled sub-partition is merged alone from its run of every spill and its dict (no
    sorting, no heap), yielded and freed; one still over the budget is partitioned again one level down."""

    __slots__ = ("memory", "merge", "width", "gauge", "level", "d", "parts", "sizes", "held", "out",
                 "spills", "files")

    def __init__(self, memory: TaskMemory, merge: Callable, width: int, gauge: Gauge, level: int, d: dict):
        self.memory = memory
        self.merge = merge
        self.width = width
        self.gauge = gauge
        self.level = level
        #: the combiners until the first spill
        self.d = d
        #: after it: the combiners by sub-partition, their sizes in the gauge's items, and which spilled
        self.parts: list[dict] = []
        self.sizes: list[float] = []
        self.out: list[bool] = []
        #: the gauge's items in memory: records folded (values for groups, keys for plain combiners)
        self.held = 0
        #: per spill, its runs by sub-partition
        self.spills: list[dict[int, Run]] = []
        self.files: list[str] = []

    def fill(self, records: Iterable, fold: Callable) -> None:
        it = iter(records)
        if not self.parts and not self._fill(it, fold):
            return
        self._fill_routed(it, fold)

    def _fill(self, it: Iterator, fold: Callable) -> bool:
        """Fold into the one dict until the first spill: True if it spilled (the input goes on)."""
        d, gauge, width = self.d, self.gauge, self.width
        while True:
            every = gauge.every
            fold(d, islice(it, every))
            # one record looked ahead says whether the input goes on (no list per slice: that cost 10%)
            head = next(it, _END)
            if head is _END:
                return False
            fold(d, (head,))
            self.held += every + 1
            if gauge.over(self.held if width else len(d)):
                self.spill()
                gauge.spilled()
                return True

    def _fill_routed(self, it: Iterator, fold: Callable) -> None:
        """Fold after a spill: each record into its sub-partition's dict."""
        parts, sizes, level, gauge, width = self.parts, self.sizes, self.level, self.gauge, self.width
        routed: list[list] = [[] for _ in range(PARTITIONS)]
        adds = [r.append for r in routed]
        while True:
            every = gauge.every
            records = list(islice(it, every))
            if not records:
                return
            try:
                with paused_gc():  # a tuple per record, no garbage
                    for rec in records:
                        k, _ = rec
                        adds[hash((k, level)) % PARTITIONS](rec)
            except (TypeError, ValueError):
                fold({}, records)  # a bad record: the fold says so, as it would in memory
                raise
            for p, rs in enumerate(routed):
                if rs:
                    fold(parts[p], rs)
                    sizes[p] += len(rs)
                    rs.clear()
            self.held += len(records)
            if len(records) < every:
                return
            if gauge.over(self.held if width else sum(map(len, parts))):
                self.spill()
                gauge.spilled()

    def _split(self) -> None:
        """The one dict becomes a dict per sub-partition, each sized in the gauge's items."""
        d, level, width = self.d, self.level, self.width
        parts: list[dict] = [{} for _ in range(PARTITIONS)]
        for item in d.items():
            parts[hash((item[0], level)) % PARTITIONS][item[0]] = item[1]
        d.clear()
        if width == 0:
            sizes = [float(len(x)) for x in parts]
        else:
            values = [sum(map(len, x.values() if width == 1 else chain.from_iterable(x.values()))) for x in parts]
            scale = self.held / max(1, sum(values))  # records folded, spread as the values are
            sizes = [v * scale for v in values]
        self.parts, self.sizes, self.out = parts, sizes, [False] * PARTITIONS

    def spill(self) -> None:
        """Write the spilled sub-partitions' dicts, and spill more kept ones if they grew too big."""
        first = not self.parts
        if first:
            with paused_gc():  # a dict entry per item, no garbage
                self._split()
        parts, sizes, out, gauge = self.parts, self.sizes, self.out, self.gauge
        if self.width == 0:
            sizes[:] = map(float, map(len, parts))
        # the budget in the gauge's items: nothing is kept under a budget smaller than one item
        capacity = gauge.limit / max(1, gauge.per_item)
        kept = sum(s for s, o in zip(sizes, out) if not o)
        if first or kept > capacity * KEEP_HIGH:
            for p in sorted(range(PARTITIONS), key=sizes.__getitem__, reverse=True):
                if kept <= capacity * KEEP:
                    break
                if not out[p]:
                    out[p] = True
                    kept -= sizes[p]
        width = self.width
        runs: dict[int, Run] = {}
        with RunWriter(self.memory.spill_dir, "combine", private=True) as w, paused_gc():
            for p, part in enumerate(parts):
                if not out[p] or not part:
                    continue
                # long value lists are written in pieces; a C pass over the lengths says whether any is long
                cut = width and max(map(len, part.values() if width == 1 else
                                        chain.from_iterable(part.values()))) > LONG
                runs[p] = w.write(_cut(part.items(), width) if cut else part.items())
                parts[p] = {}  # written: its memory may go
                sizes[p] = 0.0
        if width:
            self.held = int(sum(sizes))
        self.files.append(w.path)
        self.spills.append(runs)
        self.memory.spills += 1

    def items(self) -> Iterator[tuple[Any, Any]]:
        if not self.spills:
            return self._kept(self.d)
        return self._merged()

    def _kept(self, d: dict) -> Iterator[tuple[Any, Any]]:
        if self.width > 1:
            return zip(d.keys(), map(tuple, d.values()))
        return iter(d.items())

    def _merged(self) -> Iterator[tuple[Any, Any]]:
        # the keys of a sub-partition are iterated in C (a dict's items), not through generators
        return chain.from_iterable(self._merged_partitions())

    def _merged_partitions(self) -> Iterator[Iterator[tuple[Any, Any]]]:
        parts, out = self.parts, self.out
        try:
            # the kept sub-partitions first, as they are: nothing of them was written
            for p in range(PARTITIONS):
                if not out[p] and parts[p]:
                    yield self._kept(parts[p])
                    parts[p] = {}
            for p in range(PARTITIONS):
                if not out[p]:
                    continue
                tail, parts[p] = parts[p], {}
                # building a sub-partition's dict makes a container per row and no garbage: collections
                # scanning the whole heap again and again cost more than the merge; the only user code
                # here is a merge function, whose cycles, if any, are collected after the sub-partition
                with paused_gc():
                    merged = self._merge_partition(p, tail)
                del tail
                yield merged
        finally:
            _unlink_paths(self.files)

    def _batches(self, p: int, tail: dict) -> Iterator[Iterable]:
        for runs in self.spills:
            run = runs.get(p)
            if run is not None:
                yield from read_batches(run)
        if tail:
            yield tail.items()

    def _merge_partition(self, p: int, tail: dict) -> Iterator[tuple[Any, Any]]:
        width, gauge = self.width, self.gauge
        fold = _combiner_fold(width, self.merge)
        gauge.spilled()
        d: dict = {}
        items = 0
        buffering = False
        checking = True
        batches = self._batches(p, tail)
        for batch in batches:
            items += fold(d, batch)
            if not checking or not gauge.over(items if width else len(d)):
                continue
            if not buffering and self.level + 1 < MAX_LEVEL and _spread(d, items, width):
                # this sub-partition alone is over the budget: partition it (and what is left of it)
                # again, by another salt, and merge those
                child = _Merger(self.memory, self.merge, width, gauge, self.level + 1, d)
                child.held = items
                child.spill()
                gauge.spilled()
                child.fill(chain.from_iterable(batches), fold)
                return child.items()
            if width:
                # one key (or a few) holds most of it: its values continue on disk
                buffering = True
                _buffer(d, width, self.memory, gauge)
                items = 0
                gauge.spilled()
            else:
                checking = False  # a few huge combiners: partitioning cannot split them
        if buffering:
            return _finish(d, width)
        if width > 1:
            return zip(d.keys(), map(tuple, d.values()))
        return iter(d.items())


def _combiner_fold(width: int, merge: Callable) -> Callable[[dict, Iterable], int]:
    """The fold of ``(key, combiner)`` rows of a spill into a dict; it returns how many values it
    folded (the gauge's measure of groups; 0 for plain combiners, measured by the dict's size)."""
    if width == 0:
        return partial(_fold_merged, merge=merge)
    return _fold_lists if width == 1 else _fold_tuples


def _fold_merged(d: dict, rows: Iterable, merge: Callable) -> int:
    for k, c in rows:
        if k in d:
            d[k] = merge(d[k], c)
        else:
            d[k] = c
    return 0


def _fold_lists(d: dict, rows: Iterable) -> int:
    # a row's list is this merge's own (unpickled, or the spilling dict's): the first one of a key is
    # extended in place
    n = 0
    get = d.get
    for k, c in rows:
        n += len(c)
        g = get(k)
        if g is None:
            d[k] = c
        else:
            g.extend(c)
    return n


def _fold_tuples(d: dict, rows: Iterable) -> int:
    n = 0
    get = d.get
    for k, c in rows:
        g = get(k)
        if g is None:
            d[k] = list(c)
        else:
            for have, values in zip(g, c):
                if values:
                    have.extend(values)
        n += sum(map(len, c))
    return n


def _spread(d: dict, items: int, width: int) -> bool:
    """Whether partitioning ``d`` again would split it: many keys, none holding most of the values."""
    if len(d) <= PARTITIONS:
        return False
    if width == 0:
        return True
    sizes = map(len, d.values()) if width == 1 else (sum(map(len, g)) for g in d.values())
    return max(sizes) * 2 < items


def _buffer(d: dict, width: int, memory: TaskMemory, gauge: Gauge) -> None:
    """Big groups of ``d`` become ``GroupBuffer``s and go to disk now."""
    big = gauge.every
    for k, g in d.items():
        if width == 1:
            if type(g) is list and len(g) > big:
                d[k] = GroupBuffer(memory, gauge, g, flush=True)
            continue
        for pos, part in enumerate(g):
            if type(part) is list and len(part) > big:
                g[pos] = GroupBuffer(memory, gauge, part, flush=True)


def _piece(values: list) -> int:
    """Values per spilled piece of a long list: ``GROUP_PIECE``, fewer when values are big (a piece is
    pickled whole; aim at about ``BATCH_BYTES``)."""
    per = len(pickle.dumps(values[:8], 5)) / min(8, len(values))
    return max(1, min(GROUP_PIECE, int(BATCH_BYTES / max(1.0, per))))


def _cut(rows: list[tuple[Any, Any]], width: int) -> Iterator[tuple[Any, Any]]:
    for k, c in rows:
        if width == 1:
            if len(c) <= LONG:
                yield k, c
                continue
            step = _piece(c)
            for i in range(0, len(c), step):
                yield k, c[i:i + step]
            continue
        if max(map(len, c)) <= LONG:
            yield k, c
            continue
        for pos, values in enumerate(c):
            if not values:
                continue
            step = _piece(values)
            for i in range(0, len(values), step):
                yield k, tuple(values[i:i + step] if j == pos else [] for j in range(width))


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
    """The values of one key too many for memory: runs on disk plus a list (PySpark's
    ``ExternalListOfList``). ``result()`` is a list or ``SpilledRecords``.

    It judges its size by the cost per value its aggregation learned (``Gauge.estimate_over``) and
    writes whenever its list reaches a quarter of the budget: while groups are merged the consumer
    downstream may grow too, and that growth is not this group's."""

    __slots__ = ("memory", "gauge", "values", "runs", "writer", "checked")

    def __init__(self, memory: TaskMemory, gauge: Gauge, values: list | None = None, flush: bool = False):
        self.memory = memory
        self.gauge = gauge
        self.values: list = values if values is not None else []
        self.runs: list = []
        self.writer: RunWriter | None = None
        self.checked = 0
        if flush and self.values:
            self._write()

    def __len__(self) -> int:
        return sum(r.count for r in self.runs) + len(self.values)

    def extend(self, values: list) -> None:
        self.values.extend(values)
        if len(self.values) - self.checked >= self.gauge.every:
            self.checked = len(self.values)
            if self.gauge.estimate_over(len(self.values) * 4):
                self._write()

    def _write(self) -> None:
        if self.writer is None:
            self.writer = RunWriter(self.memory.spill_dir, "group", private=True)
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


# -- output that continues on disk -----------------------------------------------------------------------

def spool(records: Iterable, memory: TaskMemory) -> list | SpilledRecords:
    """All of ``records``: a list while they fit the budget, else runs on disk plus a list."""
    runs: list = []
    writer: RunWriter | None = None
    for buf, last in _filled(records, memory):
        if not last:
            if writer is None:
                writer = RunWriter(memory.spill_dir, "part")
            runs.append(writer.write(buf, STREAM_BATCH))
            buf.clear()  # written: free it now, not when the next buffer is full (this name holds it)
    if writer is None:
        return buf
    writer.close()
    return SpilledRecords(runs, buf)


def _filled(records: Iterable, memory: TaskMemory, extra: int = 0) -> Iterator[tuple[list, bool]]:
    """``records`` in buffers: ``(buffer, False)`` each time a buffer grows past the task's budget (the
    caller writes it to disk before asking for the next), then ``(rest, True)``. The budget is checked
    every ``gauge.every`` records, never per record; ``extra`` bytes per record are what the caller
    allocates for a full buffer besides the records (a sort's arrays)."""
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
        if not had:
            gauge.learn(buf[0])  # the buffer holds the records themselves: one says what they cost
            gauge.per_item += extra
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
            rs.append(writer.write(b, STREAM_BATCH))
            b.clear()


def _unlink(runs: list) -> None:
    """Scratch runs are read once: free their disk now, not at the job's end."""
    _unlink_paths({r.path for r in runs})


def _unlink_paths(paths: Iterable[str]) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


__all__ = ["combine", "spool", "spill_buckets", "GroupBuffer", "GROUP_PIECE"]
