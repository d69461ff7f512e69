"""Partition functions for the narrow operations: each builder takes the user's function and returns
``fn(partition_index, iterator) -> iterator``. Builtin ``map``/``filter`` keep the per-record loop in C."""

from __future__ import annotations

import random
from itertools import chain
from operator import itemgetter
from typing import Callable, Iterable, Iterator

from ..errors import NotAPairError
from .nodes import func_name

_first = itemgetter(0)
_second = itemgetter(1)


def raised_here(exc: BaseException, fn: Callable) -> bool:
    """True when the innermost frame of ``exc`` is ``fn`` itself (not a user function it called)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code is fn.__code__


def not_a_pair(op: str, exc: BaseException) -> NotAPairError:
    return NotAPairError(
        f"{op} needs (key, value) pairs but a record is not one ({exc}); "
        f"make pairs first, e.g. .map(lambda x: (x, 1))"
    )


def map_fn(f: Callable) -> Callable:
    return lambda _i, it: map(f, it)


def filter_fn(f: Callable) -> Callable:
    return lambda _i, it: filter(f, it)


def flat_map_fn(f: Callable) -> Callable:
    return lambda _i, it: chain.from_iterable(map(f, it))


def map_partitions_fn(f: Callable) -> Callable:
    def run(_i, it):
        return _iterable(f(it), "mapPartitions", f)
    return run


def map_partitions_with_index_fn(f: Callable) -> Callable:
    def run(i, it):
        return _iterable(f(i, it), "mapPartitionsWithIndex", f)
    return run


def _iterable(out, op: str, f: Callable):
    """``iter(out)``: a function that returned None (or a number) fails here as in PySpark, with
    PySpark's message plus a note naming the function."""
    try:
        return iter(out)
    except TypeError as e:
        e.add_note(f"okplan: {op}({func_name(f)}) returned {type(out).__name__}; it must return an iterable "
                   f"(a list, or use yield)")
        raise


def map_values_fn(f: Callable) -> Callable:
    def map_values(_i, it):
        try:
            for k, v in it:
                yield k, f(v)
        except (TypeError, ValueError) as e:
            if raised_here(e, map_values):
                raise not_a_pair("mapValues", e) from None
            raise
    return map_values


def flat_map_values_fn(f: Callable) -> Callable:
    def flat_map_values(_i, it):
        try:
            for k, v in it:
                for x in f(v):
                    yield k, x
        except (TypeError, ValueError) as e:
            if raised_here(e, flat_map_values):
                raise not_a_pair("flatMapValues", e) from None
            raise
    return flat_map_values


def key_by_fn(f: Callable) -> Callable:
    return lambda _i, it: ((f(x), x) for x in it)


def keys_fn() -> Callable:
    return lambda _i, it: map(_first, it)


def values_fn() -> Callable:
    return lambda _i, it: map(_second, it)


def glom_fn() -> Callable:
    return lambda _i, it: iter([list(it)])


def sample_fn(with_replacement: bool, fraction: float, seed: int) -> Callable:
    """Bernoulli (without replacement) or Poisson (with) sampling, seeded per partition so that a
    re-run of the same partition on any executor picks the same records."""

    def sample(i: int, it: Iterable) -> Iterator:
        rng = random.Random(seed ^ (i * 0x9E3779B1))
        if not with_replacement:
            return (x for x in it if rng.random() < fraction)
        return _poisson_sample(rng, fraction, it)

    return sample


def _poisson_sample(rng: random.Random, mean: float, it: Iterable) -> Iterator:
    import math

    limit = math.exp(-mean)
    for x in it:
        # Knuth: count uniform draws until their product drops below e^-mean
        k, p = 0, rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        for _ in range(k):
            yield x


def zip_with_index_fn(offsets: list[int]) -> Callable:
    def zip_with_index(i, it):
        return zip(it, range(offsets[i], 1 << 62))
    return zip_with_index


def zip_with_unique_id_fn(n: int) -> Callable:
    def zip_with_unique_id(i, it):
        return ((x, j * n + i) for j, x in enumerate(it))
    return zip_with_unique_id


def identity_fn() -> Callable:
    return lambda _i, it: it
