"""Task isolation and supervision on a real local cluster: user code that kills its process, holds the
GIL past the heartbeat timeout, or raises a BaseException never costs the cluster a worker; a killed
task process (slot) is replaced, a killed worker is restarted, and the next job runs on every slot."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import threading
import time
from operator import add

import psutil
import pytest
from cluster_helpers import child_env, cluster_context, okplan_cmd, redis_server, stop_processes, wait_until

from okplan import Context, TaskProcessDiedError


class CustomStop(BaseException):
    """A BaseException that is not an Exception, as some libraries define."""


def _healthy(ctx: Context, workers: int, slots: int) -> bool:
    info = ctx.executor.hello()
    return info["workers"] == workers and info["slots"] == slots


def _job_on_every_worker(ctx: Context) -> bool:
    """Run a small shuffle job; True when both workers ran some of its tasks."""
    def slow(i, it):
        time.sleep(0.05)
        return it

    got = ctx.range(0, 1000, numSlices=8).mapPartitionsWithIndex(slow).map(lambda x: (x % 7, x)) \
        .reduceByKey(add, 3).collectAsMap()
    assert got == {k: sum(range(k, 1000, 7)) for k in range(7)}
    return len(ctx.lastJobMetrics().tasks_per_worker) == 2


@pytest.fixture(scope="module")
def cluster():
    """Two workers of two slots each; a heartbeat timeout well below the GIL test's task."""
    with cluster_context(2, slots=2, heartbeat_timeout=1.0) as ctx:
        yield ctx


@pytest.fixture
def ctx(cluster):
    assert wait_until(lambda: _healthy(cluster, 2, 4), 15)
    supervisors = cluster.executor.worker_pids()
    yield cluster
    assert wait_until(lambda: _healthy(cluster, 2, 4), 15)
    assert _job_on_every_worker(cluster)
    assert cluster.executor.worker_pids() == supervisors  # no worker died, none was restarted


def _exit(x):
    os._exit(1)


def _sigkill(x):
    os.kill(os.getpid(), signal.SIGKILL)


def _segfault(x):
    ctypes.string_at(0)


@pytest.mark.parametrize("kill, cause", [
    (_exit, r"exited with code 1 \(os\._exit\?\)"),
    (_sigkill, r"was killed by signal SIGKILL"),
    (_segfault, r"was killed by signal SIGSEGV"),
], ids=["os._exit", "SIGKILL", "segfault"])
def test_a_task_that_kills_its_process_fails_the_job_in_seconds_and_the_cluster_stays_whole(ctx, kill, cause):
    t0 = time.monotonic()
    ds = ctx.parallelize(range(100), 4).setName("raw").map(lambda x: kill(x) if x == 50 else x)
    with pytest.raises(TaskProcessDiedError,
                       match=rf"stage 0, partition 2, dataset 'raw': the task's process {cause}.* 3 times"):
        ds.collect()
    assert time.monotonic() - t0 < 15


def test_a_process_killed_once_is_retried_and_the_answer_is_right(ctx, tmp_path):
    marker = tmp_path / "killed"

    def once(x):
        if x == 7 and not marker.exists():
            marker.touch()
            os._exit(3)
        return x * 2

    assert ctx.parallelize(range(20), 4).map(once).sum() == 380
    assert marker.exists() and ctx.lastJobMetrics().retries == 1


@pytest.mark.parametrize("exc", [CustomStop("stop here"), KeyboardInterrupt("interrupted"),
                                 asyncio.CancelledError("cancelled"), SystemExit(3)],
                         ids=["custom BaseException", "KeyboardInterrupt", "CancelledError", "sys.exit"])
def test_a_base_exception_comes_back_like_any_user_error(ctx, exc):
    def boom(x):
        if x == 5:
            raise exc
        return x

    with pytest.raises(type(exc)) as info:
        ctx.parallelize(range(10), 2).setName("nums").map(boom).collect()
    assert str(info.value) == str(exc)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "okplan: raised in stage 0, partition 1, dataset 'nums'" in notes
    assert "traceback on worker" in notes and "boom" in notes
    assert ctx.lastJobMetrics().retries == 0  # a user error is not retried


def _square_in_a_pool(x):
    return x * x


def test_a_task_may_start_processes_of_its_own(ctx):
    import multiprocessing

    def squares(i, it):
        with multiprocessing.get_context("fork").Pool(2) as pool:
            return pool.map(_square_in_a_pool, list(it))

    assert ctx.parallelize(range(8), 2).mapPartitionsWithIndex(squares).collect() == [x * x for x in range(8)]


def test_a_task_holding_the_gil_past_the_heartbeat_timeout_runs_once(ctx):
    # sum() over a range is one C call: it holds the GIL throughout. Sized to outlast the 1 s timeout.
    t0 = time.perf_counter()
    sum(range(2_000_000))
    n = int(2_000_000 * 2.0 / max(1e-3, time.perf_counter() - t0))
    got = ctx.parallelize([n, n], 2).map(lambda k: sum(range(k))).collect()
    assert got == [n * (n - 1) // 2] * 2
    m = ctx.lastJobMetrics()
    assert m.retries == 0 and sum(m.tasks_per_worker.values()) == 2


def test_a_killed_worker_of_a_local_cluster_is_restarted(cluster):
    assert wait_until(lambda: _healthy(cluster, 2, 4), 15)
    ex = cluster.executor
    victim = ex.worker_pids()[0]
    restarts = ex.worker_restarts()
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: ex.worker_restarts() == restarts + 1 and len(ex.worker_pids()) == 2
                      and victim not in ex.worker_pids(), 20)
    # the master forgets the dead worker within a tick, and the new one says hello
    assert wait_until(lambda: _healthy(cluster, 2, 4) and _job_on_every_worker(cluster), 20)
    assert time.monotonic() - t0 < 20


def test_a_killed_slot_is_replaced_and_every_slot_serves_the_next_job(ctx, tmp_path):
    supervisor = psutil.Process(ctx.executor.worker_pids()[0])
    slots = [c.pid for c in supervisor.children()]
    assert len(slots) == 2
    os.kill(slots[0], signal.SIGKILL)  # idle: replaced at once
    assert wait_until(lambda: len(supervisor.children()) == 2 and slots[0] not in
                      [c.pid for c in supervisor.children()], 10)
    together = tmp_path / "together"
    together.mkdir()

    def pid_of(i, it):
        # a barrier of files: no task ends before all four run at once, so each slot runs one of them
        (together / str(i)).touch()
        deadline = time.monotonic() + 30
        while len(list(together.iterdir())) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        return [os.getpid()]

    pids = set(ctx.parallelize(range(4), 4).mapPartitionsWithIndex(pid_of).collect())
    assert pids == {c.pid for w in ctx.executor.worker_pids() for c in psutil.Process(w).children()}
    # a slot killed from outside in the middle of a task: the task runs again, the answer is right
    victim = slots[1]
    running = tmp_path / "running"
    running.mkdir()

    def slow(i, it):
        (running / f"{os.getpid()}-{i}").touch()
        time.sleep(0.5)
        return it

    def kill_when_busy():
        if wait_until(lambda: any(p.name.startswith(f"{victim}-") for p in running.iterdir()), 30, 0.005):
            os.kill(victim, signal.SIGKILL)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    assert ctx.range(0, 100, numSlices=4).mapPartitionsWithIndex(slow).sum() == 4950
    killer.join()
    assert ctx.lastJobMetrics().retries == 1


@pytest.mark.slow
def test_okplan_worker_restarts_its_supervisor():
    env = child_env()
    with redis_server() as redis_url:
        master = subprocess.Popen(okplan_cmd("master", "--bind", "tcp://127.0.0.1:0", "--insecure", "--redis",
                                             redis_url, "--heartbeat-timeout", "1"), stdout=subprocess.PIPE, env=env)
        worker = None
        try:
            url = master.stdout.readline().decode().split("listening on ")[1].split()[0]
            worker = subprocess.Popen(okplan_cmd("worker", "--master", url, "--slots", "2"), env=env)
            ctx = Context(url)
            try:
                assert wait_until(lambda: _healthy(ctx, 1, 2), 20)
                keeper = psutil.Process(worker.pid)
                supervisor = keeper.children()[0]
                supervisor.kill()
                assert wait_until(lambda: [c.pid for c in keeper.children()] not in ([], [supervisor.pid]), 10)
                assert wait_until(lambda: _healthy(ctx, 1, 2), 20)
                assert ctx.parallelize(range(10), 4).sum() == 45
            finally:
                ctx.stop()
        finally:
            stop_processes([worker, master])
