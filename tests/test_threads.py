"""Many threads running actions on one Context at once, on every executor: each gets its own answers
(results are routed by job, not by arrival order), its own metrics, and accumulators add up."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from operator import add

import pytest

from okplan import ClusterUnavailableError, Context

THREADS = 8
ACTIONS = 50


def _mixed_actions(ctx, t: int) -> list[str]:
    """ACTIONS actions of thread ``t``; the list of wrong answers (empty when all were right)."""
    wrong: list[str] = []
    base = ctx.parallelize(range(t * 1000, t * 1000 + 400), 8)
    pairs = base.map(lambda x: (x % 7, x))
    expect_sum = sum(range(t * 1000, t * 1000 + 400))
    expect_by_key: dict[int, int] = {}
    for x in range(t * 1000, t * 1000 + 400):
        expect_by_key[x % 7] = expect_by_key.get(x % 7, 0) + x
    for i in range(ACTIONS):
        kind = (i + t) % 6
        if kind == 0:
            got, want = base.collect(), list(range(t * 1000, t * 1000 + 400))
        elif kind == 1:
            got, want = base.take(400 - i), list(range(t * 1000, t * 1000 + 400 - i))
        elif kind == 2:
            got, want = base.filter(lambda x: x % 2 == 0).count(), 200
        elif kind == 3:
            got, want = pairs.reduceByKey(add).collectAsMap(), expect_by_key
        elif kind == 4:
            got, want = base.sum(), expect_sum
        else:
            got, want = base.first(), t * 1000
        if got != want:
            wrong.append(f"thread {t} action {i} (kind {kind}): {str(got)[:80]} != {str(want)[:80]}")
    return wrong


def test_eight_threads_run_fifty_mixed_actions_each_on_one_context(ctx):
    with ThreadPoolExecutor(THREADS) as pool:
        wrong = [w for ws in pool.map(lambda t: _mixed_actions(ctx, t), range(THREADS)) for w in ws]
    assert wrong == []


def test_each_thread_reads_its_own_last_job_metrics(ctx):
    barrier = threading.Barrier(4)

    def run(t: int) -> int:
        barrier.wait()
        ctx.parallelize(range(10), t + 1).count()
        ctx.parallelize(range(10), t + 1).map(lambda x: x).collect()
        return sum(m.tasks for m in ctx.lastJobMetrics().stages.values())

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(run, range(4))) == [1, 2, 3, 4]


def test_accumulators_add_up_across_threads(ctx):
    acc = ctx.accumulator(0)
    ds = ctx.parallelize(range(100), 4)

    def run(_: int) -> None:
        for _ in range(5):
            ds.foreach(lambda x: acc.add(1))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(run, range(4)))
    assert acc.value == 4 * 5 * 100


def test_a_cache_unpersisted_by_another_thread_is_recomputed_from_lineage(ctx):
    cached = ctx.parallelize(range(1000), 4).map(lambda x: x * 2).cache()
    assert cached.count() == 1000
    stop = threading.Event()

    def flap() -> None:
        while not stop.is_set():
            cached.unpersist()
            cached.cache()

    flapper = threading.Thread(target=flap)
    flapper.start()
    try:
        for _ in range(20):
            assert cached.sum() == 999_000
    finally:
        stop.set()
        flapper.join()


def test_stopping_a_cluster_context_ends_the_jobs_other_threads_wait_for():
    ctx = Context("local-cluster[1]")
    errors: list[BaseException] = []

    def wait_for_a_slow_job() -> None:
        try:
            ctx.parallelize(range(4), 4).map(lambda x: time.sleep(1) or x).collect()
        except BaseException as e:  # noqa: BLE001 - the test looks at it
            errors.append(e)

    t = threading.Thread(target=wait_for_a_slow_job)
    t.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    ctx.stop()
    t.join(10)
    assert not t.is_alive() and time.monotonic() - t0 < 8
    with pytest.raises(ClusterUnavailableError, match="stopped"):
        raise errors[0]
