"""External merge sort for the task runner (``sortByKey``, ``sortBy``,
``repartitionAndSortWithinPartitions``): a partition that does not fit the running task's memory budget
is cut into sorted runs on disk, which are merged back into one stable order (PySpark's
``ExternalSorter`` is the reference).
"""

from __future__ import annotations

import bisect
from itertools import chain
from operator import itemgetter
from typing import Any, Callable, Iterable, Iterator

from .external import _filled, _unlink
from .memory import current
from .spill import Run, paused_gc, read_batches, write_run

#: records per batch of a sorted run: the merge holds one batch per run and sorts what is ready at once
SORT_BATCH = 8192
#: bytes per record a sort allocates besides its buffer: the array of keys and Timsort's merge area
SORT_OVERHEAD = 24

_TUPLE = {tuple}
_PAIR = {2}
_KEY = itemgetter(0)
_VALUE = itemgetter(1)


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
    for buf, last in _filled(records, memory, SORT_OVERHEAD + 8):
        if last:
            buf.sort(key=key, reverse=reverse)
            break
        # a sorted copy is written; the buffer frees its records in the order they were made, which
        # is their order in memory (freed in sorted order, each record was a cache miss)
        run = sorted(buf, key=key, reverse=reverse)
        runs.append(write_run(memory.spill_dir, _pieces(run), "sort", 1))
        del run
        buf.clear()  # written: free it now, not when the next buffer is full (this name holds it)
    if not runs:
        return iter(buf)
    # the merge hands on lists: iterating them stays in C, no generator step per record
    return chain.from_iterable(_merge_sorted(runs, buf, key, reverse))


def _pieces(buf: list) -> Iterator[Any]:
    """A sorted buffer as the pieces of its run, ``SORT_BATCH`` records each: a piece of ``(k, v)``
    tuples as two lists, its keys and its values (pickle memoizes every tuple, and that cost more than
    the rest of the spill), any other piece as the list of its records."""
    for i in range(0, len(buf), SORT_BATCH):
        piece = buf[i:i + SORT_BATCH]
        if set(map(type, piece)) == _TUPLE and set(map(len, piece)) == _PAIR:
            yield list(map(_KEY, piece)), list(map(_VALUE, piece))
        else:
            yield piece


def _read_pieces(run: Run) -> Iterator[list]:
    """The records of a sorted run, a piece at a time (``_pieces`` wrote them)."""
    for (piece,) in read_batches(run):
        if type(piece) is tuple:
            with paused_gc():  # a tuple per record, no garbage
                piece = list(zip(*piece))
        yield piece


def _merge_sorted(runs: list, buf: list, key: Callable | None, reverse: bool) -> Iterator[list]:
    """The records of sorted runs (and the sorted ``buf`` after them) in one order, in lists, stable:
    of equal records, those of earlier runs first.

    The merge goes batch by batch, not record by record: the smallest last key of the batches at
    hand (``bound``) says that every record up to it, in every run, can go now; those records are
    concatenated in run order and sorted in C (Timsort merges the sorted stretches; it is stable), so
    no Python code runs per record but the key function."""
    streams = [_read_pieces(r) for r in runs] + [iter((buf,))]
    heads: list[list] = []  # per live stream: [stream, batch, position]
    for s in streams:
        b = next(s, None)
        if b:
            heads.append([s, b, 0])
    del buf
    ident = key is None
    try:
        while heads:
            lasts = [h[1][-1] for h in heads]
            if not ident:
                lasts = list(map(key, lasts))  # type: ignore[arg-type]
            bound = max(lasts) if reverse else min(lasts)
            chunk: list = []
            live = []
            for h in heads:
                s, b, pos = h
                while True:
                    cut = _cut_at(b, bound, pos, key, reverse)
                    chunk.extend(b if pos == 0 and cut == len(b) else b[pos:cut])
                    if cut < len(b):
                        h[1], h[2] = b, cut
                        live.append(h)
                        break
                    # a whole batch went: the next one may begin with records equal to the bound
                    b, pos = next(s, None), 0
                    if not b:
                        break
            heads = live
            chunk.sort(key=key, reverse=reverse)
            yield chunk
    finally:
        _unlink(runs)


def _cut_at(b: list, bound: Any, lo: int, key: Callable | None, reverse: bool) -> int:
    """The end of the records of the sorted batch ``b`` (from ``lo``) that come no later than ``bound``."""
    if not reverse:
        return bisect.bisect_right(b, bound, lo, key=key)
    # descending: the first record whose key is below the bound
    hi = len(b)
    while lo < hi:
        mid = (lo + hi) // 2
        if (b[mid] if key is None else key(b[mid])) < bound:
            hi = mid
        else:
            lo = mid + 1
    return lo


__all__ = ["external_sorted", "SORT_BATCH", "SORT_OVERHEAD"]
