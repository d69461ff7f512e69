"""Partitioners: which reduce partition a key goes to.

They live in the logical layer because a plan node's partitioner is part of *what* the data is: the
optimizer compares partitioners to decide whether a shuffle is needed at all.
"""

from __future__ import annotations

import itertools
import math
import random
import sys
import zlib
from bisect import bisect_left, bisect_right
from typing import Any, Callable, Iterable


def portable_hash(obj: Any) -> int:
    """A hash that is the same in every process.

    Python salts ``hash(str)`` and ``hash(bytes)`` per process (``PYTHONHASHSEED``), so a shuffle that
    ran its map tasks in two processes would send one key to two reducers. Strings and bytes are hashed
    with CRC32 instead; tuples combine their items the way PySpark's ``portable_hash`` does.

    >>> portable_hash("a") == portable_hash("a")
    True
    >>> portable_hash(None)
    0
    """
    if obj is None:
        return 0
    tp = type(obj)
    if tp is str:
        return zlib.crc32(obj.encode("utf-8", "surrogatepass"))
    if tp is int or tp is float or tp is bool:
        return hash(obj)
    if tp is bytes or tp is bytearray:
        return zlib.crc32(obj)
    if isinstance(obj, tuple):
        h = 0x345678
        for item in obj:
            h ^= portable_hash(item)
            h *= 1000003
            h &= sys.maxsize  # as PySpark, so tuple keys land where PySpark puts them
        h ^= len(obj)
        if h == -1:
            h = -2
        return h
    if isinstance(obj, frozenset):
        h = 0
        for item in obj:
            h ^= portable_hash(item) * 2654435761 & 0xFFFFFFFF
        return h
    if isinstance(obj, str):
        return zlib.crc32(str(obj).encode("utf-8", "surrogatepass"))
    return hash(obj)


class Partitioner:
    """Maps a key to a partition index in ``range(num_partitions)``."""

    num_partitions: int

    def partition(self, key: Any) -> int:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class HashPartitioner(Partitioner):
    """``partition_func(key) % num_partitions``, PySpark's default partitioner.

    Two hash partitioners are equal when they have the same partition count and the same function,
    which is what lets the optimizer skip a shuffle of data already partitioned that way.
    """

    __slots__ = ("num_partitions", "partition_func")

    def __init__(self, num_partitions: int, partition_func: Callable[[Any], int] = portable_hash):
        self.num_partitions = num_partitions
        self.partition_func = partition_func

    def partition(self, key: Any) -> int:
        return self.partition_func(key) % self.num_partitions

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, HashPartitioner)
            and other.num_partitions == self.num_partitions
            and other.partition_func is self.partition_func
        )

    def __hash__(self) -> int:
        return hash((HashPartitioner, self.num_partitions, id(self.partition_func)))

    def describe(self) -> str:
        fn = "" if self.partition_func is portable_hash else f", {_name(self.partition_func)}"
        return f"hash({self.num_partitions}{fn})"

    def __reduce__(self):
        return (HashPartitioner, (self.num_partitions, self.partition_func))


class RangePartitioner(Partitioner):
    """Sends keys to partitions by comparing them with sorted ``bounds`` (``len(bounds) + 1``
    partitions), so that partition ``i`` holds only keys smaller than those of ``i + 1``.

    ``bounds=None`` means they are sampled when a job needs them (``sketcher``/``with_bounds_from``,
    driven by ``okplan.sort_bounds``), not when ``sortByKey`` is called.
    """

    __slots__ = ("bounds", "ascending", "keyfunc", "num_partitions")

    def __init__(self, bounds: list | None, ascending: bool = True, keyfunc: Callable[[Any], Any] | None = None,
                 num_partitions: int | None = None):
        self.bounds = None if bounds is None else list(bounds)
        self.ascending = ascending
        self.keyfunc = keyfunc
        self.num_partitions = num_partitions if num_partitions is not None else len(self.bounds or ()) + 1

    def partition(self, key: Any) -> int:
        if self.bounds is None:
            raise RuntimeError("range bounds are sampled when the job runs; resolve them first (okplan.sort_bounds)")
        k = self.keyfunc(key) if self.keyfunc is not None else key
        p = bisect_left(self.bounds, k) if self.ascending else len(self.bounds) - bisect_right(self.bounds, k)
        return min(p, self.num_partitions - 1)

    def sketcher(self, input_partitions: int) -> Callable[[Iterable], tuple[int, list]]:
        """A per-partition function returning ``(records seen, reservoir sample of their sort keys)``,
        sized as Spark's range partitioner sizes it: about 60 keys per output partition in all.

        The reservoir is Li's algorithm L: after the first ``k`` records it jumps straight to the next
        record that enters the sample (skipped records pass through ``islice`` in C, counted by ``zip``
        with a counter), so a partition of n records costs O(k log(n/k)) Python steps, not n; the key
        function runs on sampled keys only.

        >>> seen, sample = RangePartitioner(None, True, None, 2).sketcher(1)(((i, None) for i in range(1000)))
        >>> seen, len(sample), all(0 <= k < 1000 for k in sample)
        (1000, 120, True)
        """
        from .narrow import not_a_pair

        k = max(1, math.ceil(3.0 * 20 * self.num_partitions / max(1, input_partitions)))
        keyfunc = self.keyfunc if self.keyfunc is not None else _identity

        def sketch(records: Iterable) -> tuple[int, list]:
            rng = random.Random(k)
            consumed = itertools.count()
            it = zip(records, consumed)  # zip stops before asking the counter: it counts records read
            try:
                sample = [keyfunc(kv[0]) for kv, _ in itertools.islice(it, k)]
                if len(sample) == k:
                    w = math.exp(math.log(1.0 - rng.random()) / k)
                    while w < 1.0:
                        skip = min(sys.maxsize, int(math.log(1.0 - rng.random()) / math.log1p(-w)))
                        picked = next(itertools.islice(it, skip, None), None)
                        if picked is None:
                            break
                        sample[rng.randrange(k)] = keyfunc(picked[0][0])
                        w *= math.exp(math.log(1.0 - rng.random()) / k)
                    else:
                        for _ in it:  # (w is 1 only by rounding: the rest is read, and counted, anyway)
                            pass
            except (TypeError, IndexError) as e:
                raise not_a_pair("sortByKey", e) from None
            return next(consumed), sample

        return sketch

    def with_bounds_from(self, sketches: list[tuple[int, list]]) -> "RangePartitioner":
        """This partitioner with bounds from the partitions' sketches: weighted quantiles, each sampled
        key standing for ``seen / len(sample)`` records of its partition."""
        candidates = [(key, seen / len(sample)) for seen, sample in sketches if sample for key in sample]
        candidates.sort(key=_first_item)
        return RangePartitioner(weighted_bounds(candidates, self.num_partitions), self.ascending, self.keyfunc,
                                self.num_partitions)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RangePartitioner)
            and self.bounds is not None
            and other.bounds == self.bounds
            and other.ascending == self.ascending
            and other.keyfunc is self.keyfunc
            and other.num_partitions == self.num_partitions
        )

    def __hash__(self) -> int:
        return hash((RangePartitioner, self.num_partitions, self.ascending))

    def describe(self) -> str:
        order = "asc" if self.ascending else "desc"
        sampled = ", bounds sampled at run time" if self.bounds is None else ""
        return f"range({self.num_partitions}, {order}{sampled})"

    def __reduce__(self):
        return (RangePartitioner, (self.bounds, self.ascending, self.keyfunc, self.num_partitions))


def weighted_bounds(candidates: list[tuple[Any, float]], n: int) -> list:
    """``n - 1`` bounds from ``(key, weight)`` candidates sorted by key, each standing for ``weight``
    records (Spark's ``RangePartitioner.determineBounds``): equal weight between neighbouring bounds."""
    if n <= 1 or not candidates:
        return []
    step = sum(w for _, w in candidates) / n
    bounds: list = []
    cumulative, target = 0.0, step
    for key, weight in candidates:
        cumulative += weight
        if cumulative >= target and (not bounds or key > bounds[-1]):
            bounds.append(key)
            target += step
            if len(bounds) == n - 1:
                break
    return bounds


def natural_key(x: Any) -> Any:
    """A key as it is: ``sortByKey``'s default ``keyfunc`` (PySpark's ``lambda x: x``), named so that
    the shuffle and the sort can skip calling it per record."""
    return x


_identity = natural_key


def _first_item(pair: tuple) -> Any:
    return pair[0]


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
