"""``count()`` runs user functions as PySpark does, on every executor: only a chain that calls none
(and cannot fail on a record) is answered from source sizes."""

from __future__ import annotations

import pytest


def test_count_calls_map_on_every_record(ctx):
    seen = ctx.accumulator(0)

    def validate(x):
        seen.add(1)
        return x

    ds = ctx.parallelize(range(1000), 4).map(validate)
    assert ds.count() == 1000
    assert seen.value == 1000
    assert ds.union(ctx.range(5)).repartition(3).count() == 1005
    assert seen.value == 2000


def test_a_raising_map_raises_from_count(ctx):
    def validate(x):
        if x == 7:
            raise ValueError(f"bad record {x}")
        return x

    with pytest.raises(ValueError, match="bad record 7"):
        ctx.parallelize(range(10), 3).map(validate).count()


def test_count_of_cache_fills_it_and_then_reads_it(ctx):
    seen = ctx.accumulator(0)

    def mark(x):
        seen.add(1)
        return x

    cached = ctx.parallelize(range(50), 2).map(mark).cache()
    try:
        assert cached.count() == 50 and seen.value == 50
        assert cached.count() == 50 and seen.value == 50       # the cache answers: no second pass
    finally:
        cached.unpersist()
