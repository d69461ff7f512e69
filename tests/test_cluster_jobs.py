"""The cluster executor runs jobs like the local one: stable hashing across processes, user errors with
their own type, accumulators, large results, metrics, and no Redis keys left behind."""

from __future__ import annotations

import socket
import threading
from operator import add

import pytest
from cluster_helpers import cluster_context, job_keys, wait_until

from okplan import JobFailedError, portable_hash
from okplan.exec.serialization import TaskPicklingError


@pytest.fixture(scope="module")
def cctx():
    with cluster_context(2) as ctx:
        yield ctx


KEYS = [f"key-{i}" for i in range(200)] + [(i, f"t{i}") for i in range(50)] + list(range(-20, 20)) + [None, 2.5, b"b"]


def test_each_key_goes_to_exactly_one_reducer_across_processes(cctx):
    pairs = [(k, 1) for k in KEYS] * 3
    parts = cctx.parallelize(pairs, 6).partitionBy(4).glom().collect()
    assert set(cctx.lastJobMetrics().tasks_per_worker.values()) and len(cctx.lastJobMetrics().tasks_per_worker) == 2
    where: dict = {}
    for index, part in enumerate(parts):
        for k, _ in part:
            where.setdefault(k, set()).add(index)
    assert all(len(v) == 1 for v in where.values())
    # the workers (PYTHONHASHSEED=0) agree with this process (random seed) on every key
    assert {k: v.pop() for k, v in where.items()} == {k: portable_hash(k) % 4 for k in KEYS}
    counts = cctx.parallelize(pairs, 6).reduceByKey(add, 5).collectAsMap()
    assert counts == {k: 3 for k in KEYS}


class DomainError(ValueError):
    pass


class Unpicklable(Exception):
    def __init__(self, what):
        super().__init__(f"cannot do {what}")
        self.lock = threading.Lock()


def fail_domain(x):
    if x == 3:
        raise DomainError(f"bad record {x}")
    return x


def fail_unpicklable(x):
    raise Unpicklable("this")


def test_user_exception_reaches_the_client_with_its_type_and_the_cluster_carries_on(cctx):
    with pytest.raises(DomainError, match="bad record 3") as info:
        cctx.parallelize(range(6), 3).map(fail_domain).map(lambda x: (x, x)).reduceByKey(add).collect()
    notes = "\n".join(info.value.__notes__)
    assert "okplan: raised in stage" in notes and "fail_domain" in notes and "traceback on worker" in notes
    with pytest.raises(Exception, match="cannot do this") as info:
        cctx.parallelize([1], 1).map(fail_unpicklable).collect()
    assert type(info.value).__name__ == "Unpicklable"
    assert cctx.parallelize(range(10), 3).map(lambda x: x * 2).sum() == 90
    # the failed job's other map tasks may still be running on a slow worker (the job fails as soon as
    # one task raises); the master deletes the keys they write when the last of them returns
    assert wait_until(lambda: job_keys(cctx) == [], 10), job_keys(cctx)


def test_accumulators_count_each_successful_task_once(cctx):
    acc = cctx.accumulator(0)
    seen = cctx.accumulator(0)

    def note(x):
        acc.add(x)
        return x

    result = cctx.parallelize(range(100), 4).map(note).map(lambda x: (x % 3, 1)).reduceByKey(add).collectAsMap()
    assert result == {0: 34, 1: 33, 2: 33}
    cctx.parallelize(range(10), 5).foreach(lambda x: seen.add(1))
    assert (acc.value, seen.value) == (sum(range(100)), 10)


def test_a_closure_over_a_socket_fails_at_the_client_with_what_to_do(cctx):
    s = socket.socket()
    try:
        with pytest.raises(TaskPicklingError, match=r"the function of map at test_cluster_jobs.py:\d+ cannot be "
                                                    r"pickled: it holds a <socket.socket>.*create it inside"):
            cctx.parallelize([1, 2]).map(lambda x: s.fileno() + x).collect()
    finally:
        s.close()
    assert cctx.parallelize([1, 2]).count() == 2


def test_large_results_come_through_redis_and_are_deleted(cctx):
    data = [("x" * 50, i) for i in range(40_000)]
    assert cctx.parallelize(data, 3).collect() == data
    assert cctx.lastJobMetrics().bytes_read > 1 << 16
    assert job_keys(cctx) == []


def test_finished_failed_and_abandoned_jobs_leave_no_keys_but_caches(cctx):
    ds = cctx.parallelize([(i % 10, i) for i in range(1000)], 4)
    ds.reduceByKey(add).join(ds.groupByKey()).count()
    assert ds.map(lambda kv: kv).take(3) == [(0, 0), (1, 1), (2, 2)]
    with pytest.raises(ZeroDivisionError):
        ds.map(lambda kv: kv[1] // 0).reduceByKey(add).collect()
    shared = ds.mapValues(lambda v: v + 1)
    shared.union(shared).count()
    # a job abandoned by take() is cleaned up once its running tasks are back: asynchronously
    assert wait_until(lambda: job_keys(cctx) == [], 5), job_keys(cctx)
    cached = ds.reduceByKey(add).cache()
    assert cached.count() == 10
    keys = job_keys(cctx)
    assert keys and all(k.startswith("okplan:cache:") for k in keys)
    cached.unpersist()
    assert job_keys(cctx) == []


def test_cached_dataset_is_read_from_redis_not_recomputed(cctx):
    calls = cctx.accumulator(0)

    def count_call(x):
        calls.add(1)
        return x

    ds = cctx.parallelize(range(50), 2).map(count_call).cache()
    assert ds.sum() == sum(range(50)) and ds.count() == 50
    assert calls.value == 50
    ds.unpersist()


def test_metrics_report_tasks_bytes_and_compression(cctx):
    words = cctx.parallelize(["alpha beta gamma alpha"] * 5000, 4).flatMap(str.split).map(lambda w: (w, 1))
    assert words.groupByKey().mapValues(len).collectAsMap() == {"alpha": 10000, "beta": 5000, "gamma": 5000}
    m = cctx.lastJobMetrics()
    assert sum(m.tasks_per_worker.values()) == sum(s.tasks for s in m.stages.values())
    shuffle = [s for s in m.stages.values() if s.kind == "shuffle map"][0]
    assert shuffle.records_out == 20000 and shuffle.bytes_compressed < shuffle.bytes_raw
    assert m.compression_ratio > 2
    assert m.bytes_written > 0 and m.bytes_read > 0
    assert {"compute", "serialize", "compress", "store", "schedule"} <= set(shuffle.phases)
    assert "Physical plan (local-cluster[2])" in words.toDebugString()


def test_take_stops_the_job_and_the_cluster_serves_the_next(cctx):
    assert cctx.range(0, 10_000, numSlices=8).map(lambda x: x * 3).take(4) == [0, 3, 6, 9]
    assert cctx.range(0, 10, numSlices=2).collect() == list(range(10))


def test_a_missing_cached_block_without_lineage_fails_clearly(cctx):
    ds = cctx.parallelize(range(20), 2).cache()
    ds.count()
    plan_time_keys = job_keys(cctx)
    ds2 = ds.map(lambda x: x + 1)
    # the plan reads the cache; the cache disappears between planning and running
    node = ds2._node
    physical = cctx._plan(node)[3]
    cctx.executor.store.delete(plan_time_keys)
    from okplan.actions import PartitionAction

    with pytest.raises(JobFailedError, match="gone from Redis"):
        list(cctx.executor.run(physical, PartitionAction(list, "collect"), [0, 1]))
    assert ds2.collect() == list(range(1, 21))  # planned again: recomputed from lineage
    ds.unpersist()


def test_short_tasks_run_in_batches_with_every_answer_and_accumulator_update_once(cctx):
    ctx = cctx
    seen = ctx.accumulator(0)

    def count(x):
        seen.add(1)
        return x

    assert ctx.range(600, numSlices=300).map(count).sum() == sum(range(600))
    m = ctx.lastJobMetrics()
    assert seen.value == 600 and m.retries == 0 and sum(m.tasks_per_worker.values()) == 300
    # a stage over a small input is batched before any task is timed; tasks slower than a batch's
    # budget hand the rest of it back, and every partition still comes back once, in order
    assert ctx.parallelize(range(40), 20).mapPartitions(_slow_partition).collect() == list(range(40))
    assert ctx.lastJobMetrics().retries == 0


def test_a_batch_hands_back_its_unstarted_tasks_while_one_of_them_waits_for_them(cctx, tmp_path):
    # a very small stage goes to one slot as one batch; its first task waits until the last one has
    # run: only handing back the tasks not started, while the first one still runs, lets it end
    def wait_for_the_last(i, it):
        import time

        (tmp_path / str(i)).touch()
        deadline = time.monotonic() + 30
        while i == 0 and not (tmp_path / "3").exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        return [(i, (tmp_path / "3").exists())]

    for _ in range(2):
        for p in tmp_path.iterdir():
            p.unlink()
        got = cctx.parallelize(range(4), 4).mapPartitionsWithIndex(wait_for_the_last).collect()
        assert got[0] == (0, True) and [i for i, _ in got] == [0, 1, 2, 3]
        assert cctx.lastJobMetrics().retries == 0 and sum(cctx.lastJobMetrics().tasks_per_worker.values()) == 4


def test_a_wake_reaches_the_idle_task_processes_and_asks_for_no_answer(cctx):
    import psutil

    cctx.parallelize(range(4), 2).count()
    workers = [psutil.Process(w).children() for w in cctx.executor.worker_pids()]
    before = {c.pid: c.num_ctx_switches().voluntary for children in workers for c in children}

    def woke():
        # the master sends a worker one WAKE per 10 ms at most: the action above may just have had it
        cctx.executor._woken = 0.0
        cctx.executor.wake()
        return any(all(c.num_ctx_switches().voluntary > before[c.pid] for c in children) for children in workers)

    # the task processes of the worker the next task goes to woke up (client -> master -> supervisor
    # -> task process), though no job ran
    assert wait_until(woke, 10)
    assert cctx.parallelize(range(10), 4).map(lambda x: x * 3).collect() == [x * 3 for x in range(10)]
    assert {c.pid for w in cctx.executor.worker_pids() for c in psutil.Process(w).children()} == set(before)


def _slow_partition(it):
    import time

    time.sleep(0.05)
    return it


def test_a_thread_waiting_for_its_job_reads_the_socket_itself(cctx):
    link = cctx.executor.link
    decoded_by: list[str] = []
    decode = link._decode

    def recording(frames):
        msg = decode(frames)
        if msg.kind in ("result", "job_done"):
            decoded_by.append(threading.current_thread().name)
        return msg

    link._decode = recording
    try:
        for _ in range(10):
            assert cctx.parallelize(range(10), 2).map(lambda x: x + 1).collect() == list(range(1, 11))
        # no hop through the link's thread: the caller took the master's answers off the socket itself
        # (the link's thread drains the socket once a second while nobody waits: it may catch one)
        mine = decoded_by.count(threading.current_thread().name)
        assert len(decoded_by) >= 10 and mine >= len(decoded_by) - 2
        # many threads at once: each gets its own job's answers, whoever read them
        got: dict[int, list] = {}
        threads = [threading.Thread(target=lambda i=i: got.__setitem__(
            i, cctx.parallelize(range(i * 10, i * 10 + 10), 3).map(lambda x: x * 2).collect())) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert got == {i: [x * 2 for x in range(i * 10, i * 10 + 10)] for i in range(6)}
    finally:
        link._decode = decode
