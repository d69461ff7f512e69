"""Fault tolerance with real processes: a worker killed with SIGKILL, shuffle blocks lost mid-job, Redis
restarted, an unreachable master or Redis, a client that dies; and no processes left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from operator import add

import psutil
import pytest
from cluster_helpers import child_env, cluster_context, free_port, job_keys, okplan_cmd, pids_gone, wait_until

from okplan import ClusterUnavailableError, Context, JobFailedError
from okplan.physical.stage import Result, ShuffleWrite


def _expected(n: int, mod: int) -> dict:
    out: dict = {}
    for x in range(n):
        out[x % mod] = out.get(x % mod, 0) + x
    return out


def test_sigkill_of_a_worker_mid_job_still_gives_the_right_answer():
    with cluster_context(2) as ctx:
        cluster = ctx.executor
        started = threading.Event()

        def slow(i, it):
            time.sleep(0.25)
            return it

        victim = cluster.worker_pids()[0]

        def kill_when_running():
            started.wait(10)
            time.sleep(0.4)
            os.kill(victim, signal.SIGKILL)

        killer = threading.Thread(target=kill_when_running)
        killer.start()
        started.set()
        result = (ctx.range(0, 4000, numSlices=8).mapPartitionsWithIndex(slow).map(lambda x: (x % 13, x))
                  .reduceByKey(add, 4).mapValues(lambda v: v * 2).reduceByKey(add, 3).collectAsMap())
        killer.join()
        assert result == {k: 2 * v for k, v in _expected(4000, 13).items()}
        m = ctx.lastJobMetrics()
        assert m.retries >= 1 and m.stages[0].retries + sum(s.retries for s in m.stages.values()) >= 1
        assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
        # the survivor serves the next job; the local cluster restarts the killed worker
        assert ctx.parallelize(range(10), 4).sum() == 45
        assert wait_until(lambda: cluster.hello()["workers"] == 2 and cluster.worker_restarts() == 1)
        assert ctx.parallelize(range(100), 8).map(lambda x: (x % 2, x)).reduceByKey(add).collectAsMap() == \
            _expected(100, 2)
        assert job_keys(ctx) == []


def test_lost_shuffle_blocks_are_recomputed_from_lineage():
    # shuffles not kept: their keys are the job's (okplan:job:...:shuf:), which the test finds by id
    with cluster_context(2, reuse_shuffles=False) as ctx:
        store = ctx.executor.store

        def late(i, it):
            if i >= 2:
                time.sleep(1.0)  # the window in which the test deletes what partitions 0 and 1 wrote
            return it

        ds = (ctx.range(0, 1000, numSlices=4).map(lambda x: (x % 5, x)).reduceByKey(add, 4)
              .mapPartitionsWithIndex(late).map(lambda kv: (kv[0] % 2, kv[1])).reduceByKey(add, 2))
        plan = ctx._plan(ds._node)[3]
        feeding = [s.output.shuffle_id for s in plan.stages
                   if isinstance(s.output, ShuffleWrite) and s.id in plan.result_stage.parents][0]
        assert isinstance(plan.result_stage.output, Result)
        deleted: list = []

        def delete_early_outputs():
            def written():
                return [k for k in store.r.keys(f"okplan:job:*:shuf:{feeding}:*")
                        if k.endswith((b":0", b":1"))]
            if wait_until(lambda: len(written()) == 2, 10, 0.005):
                deleted.extend(written())
                store.r.delete(*deleted)

        thread = threading.Thread(target=delete_early_outputs)
        thread.start()
        result = ds.collectAsMap()
        thread.join()
        sums = _expected(1000, 5)
        assert result == {0: sums[0] + sums[2] + sums[4], 1: sums[1] + sums[3]}
        assert len(deleted) == 2
        assert ctx.lastJobMetrics().retries >= 1
        assert job_keys(ctx) == []


def test_redis_restart_between_two_jobs_on_a_cached_dataset_recomputes():
    with cluster_context(2) as ctx:
        calls = ctx.accumulator(0)

        def tracked(x):
            calls.add(1)
            return (x % 7, x)

        ds = ctx.parallelize(range(300), 4).map(tracked).cache()
        assert ds.count() == 300
        assert ds.reduceByKey(add).collectAsMap() == _expected(300, 7)
        assert calls.value == 300
        ctx.executor.restart_redis()
        assert job_keys(ctx) == []
        assert ds.reduceByKey(add).collectAsMap() == _expected(300, 7)
        assert calls.value == 600  # computed again, from the source the client still holds
        assert ds.count() == 300 and calls.value == 600  # and cached again


def test_unreachable_master_fails_fast_with_a_clear_message():
    t0 = time.monotonic()
    with pytest.raises(ClusterUnavailableError, match="no okplan master answers at tcp://127.0.0.1"):
        Context(f"tcp://127.0.0.1:{free_port()}", connect_timeout=1.0)
    assert time.monotonic() - t0 < 3


def test_unreachable_redis_fails_fast_with_a_clear_message():
    port = free_port()
    master = subprocess.Popen(okplan_cmd("master", "--bind", "tcp://127.0.0.1:0", "--insecure", "--redis",
                                         f"redis://127.0.0.1:{free_port()}/0"), stdout=subprocess.PIPE,
                              env=child_env())
    try:
        url = master.stdout.readline().decode().split("listening on ")[1].split()[0]
        t0 = time.monotonic()
        with pytest.raises(ClusterUnavailableError, match="Redis at redis://127.0.0.1:.* is unavailable"):
            Context(url)
        assert time.monotonic() - t0 < 5
    finally:
        master.terminate()
        master.wait(5)
    del port


def test_redis_dying_mid_job_fails_the_job_within_seconds():
    with cluster_context(2) as ctx:
        def slow(i, it):
            time.sleep(0.3)
            return it

        threading.Timer(0.5, lambda: os.kill(ctx.executor.redis_pid, signal.SIGKILL)).start()
        t0 = time.monotonic()
        with pytest.raises((JobFailedError, ClusterUnavailableError), match="Redis"):
            ctx.range(0, 100, numSlices=16).mapPartitionsWithIndex(slow).map(lambda x: (x, x)).reduceByKey(add).count()
        assert time.monotonic() - t0 < 20


def test_stop_leaves_no_child_processes_and_no_files():
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    ctx = Context("local-cluster[2]")
    cluster = ctx.executor
    tasks = [c.pid for w in cluster.worker_pids() for c in psutil.Process(w).children()]  # one per slot
    assert len(tasks) == 2
    pids = cluster.worker_pids() + [cluster.master_pid, cluster.redis_pid] + tasks
    tmpdir = cluster.children.tmpdir
    assert {p.pid for p in me.children(recursive=True)} - before == set(pids)
    assert ctx.parallelize(range(10)).count() == 10
    ctx.stop()
    assert pids_gone(pids, 5)
    assert {p.pid for p in me.children(recursive=True)} - before == set()
    assert not os.path.exists(tmpdir)


def test_a_client_that_dies_takes_its_local_cluster_with_it():
    script = textwrap.dedent("""
        import os, sys
        import psutil
        from okplan import Context
        ctx = Context("local-cluster[2]")
        ex = ctx.executor
        tasks = [c.pid for w in ex.worker_pids() for c in psutil.Process(w).children()]
        print(*(ex.worker_pids() + [ex.master_pid, ex.redis_pid] + tasks), flush=True)
        sys.stdin.read()
    """)
    client = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stdin=subprocess.PIPE)
    try:
        pids = [int(x) for x in client.stdout.readline().split()]
        assert len(pids) == 6 and all(psutil.pid_exists(p) for p in pids)  # 2 workers with a task process each
        client.kill()
        client.wait()
        assert pids_gone(pids, 10), [psutil.Process(p).cmdline() for p in pids if psutil.pid_exists(p)]
    finally:
        if client.poll() is None:
            client.kill()


@pytest.mark.slow
def test_chaos_workers_killed_again_and_again():
    with cluster_context(3) as ctx:
        cluster = ctx.executor
        stop = threading.Event()

        def chaos():
            while not stop.wait(0.7):
                pids = cluster.worker_pids()
                if len(pids) >= 2:
                    os.kill(pids[0], signal.SIGKILL)  # the local cluster starts it again

        def slow(i, it):
            time.sleep(0.1)
            return it

        thread = threading.Thread(target=chaos)
        thread.start()
        try:
            for _ in range(3):
                result = (ctx.range(0, 20_000, numSlices=24).mapPartitionsWithIndex(slow).map(lambda x: (x % 17, x))
                          .reduceByKey(add, 6).collectAsMap())
                assert result == _expected(20_000, 17)
        finally:
            stop.set()
            thread.join()


@pytest.mark.slow
def test_redis_restart_mid_job_recomputes_everything():
    with cluster_context(2) as ctx:
        def slow(i, it):
            if i >= 2:
                time.sleep(1.0)
            return it

        threading.Timer(0.6, ctx.executor.restart_redis).start()
        ds = ctx.parallelize(list(range(500)), 4).map(lambda x: (x % 3, x)).reduceByKey(add, 4) \
            .mapPartitionsWithIndex(slow).reduceByKey(add, 2)
        assert ds.collectAsMap() == _expected(500, 3)
