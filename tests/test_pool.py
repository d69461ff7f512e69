"""The supervised pool of task processes (okplan/exec/pool.py) on its own: reuse, replies with raw
blobs, and every way a child can die, each reported with its cause and followed by a working child."""

from __future__ import annotations

import ctypes
import os
import signal
import time

import psutil
import pytest
from cluster_helpers import pids_gone, wait_until

from okplan.exec.pool import ChildDeath, Echo, TaskPool


class Doer:
    """Requests name what to do: echo, exit, kill itself, raise, sleep, crash."""

    def __call__(self, header, blobs):
        what = header[0] if isinstance(header, tuple) else header
        if what == "exit":
            os._exit(header[1])
        if what == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if what == "segfault":
            ctypes.string_at(0)
        if what == "raise":
            raise KeyboardInterrupt("from the handler")
        if what == "sleep":
            time.sleep(header[1])
        if what == "pid":
            return os.getpid(), []
        return header, blobs


@pytest.fixture
def pool():
    p = TaskPool(2, Doer).start()
    yield p
    pids = p.pids()
    p.stop()
    assert pids_gone(pids, 5)


def test_a_child_serves_many_requests_and_blobs_come_back_as_they_were(pool):
    first = pool.run("pid").reply[0]
    assert all(pool.run("pid").reply[0] in pool.pids() for _ in range(20))
    assert first in pool.pids() and len(set(pool.pids())) == 2
    blob = os.urandom(1 << 20)
    assert pool.run({"task": 1}, [blob, b""]).reply == ({"task": 1}, [blob, b""])


@pytest.mark.parametrize("request_, death, text", [
    (("exit", 7), ChildDeath(7), "exited with code 7 (os._exit?)"),
    ("kill", ChildDeath(-9, "SIGKILL"), "was killed by signal SIGKILL (out of memory? kill -9?)"),
    ("segfault", ChildDeath(-11, "SIGSEGV"), "was killed by signal SIGSEGV (a crash in native code)"),
])
def test_a_child_that_dies_is_reported_with_its_cause_and_replaced(pool, request_, death, text):
    before = pool.generation(0)
    out = pool.run(request_)
    assert not out.ok and out.died == death and out.died.describe() == text
    assert pool.generation(out.slot) == before + 1 or out.slot != 0
    assert len(pool.pids()) == 2 and pool.run("again").reply == ("again", [])


def test_an_exception_that_escapes_the_handler_is_an_error_and_the_child_lives_on(pool):
    pids = set(pool.pids())
    out = pool.run("raise")
    assert not out.ok and out.died is None and "KeyboardInterrupt: from the handler" in out.error
    assert set(pool.pids()) == pids


def test_an_idle_child_killed_from_outside_is_replaced(pool):
    victim = pool.pids()[0]
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: pool.poll(0.05) == [] and victim not in pool.pids() and len(pool.pids()) == 2, 5)
    assert pool.run("ok").reply == ("ok", [])


def test_imap_keeps_every_slot_busy_and_survives_deaths_among_the_requests(pool):
    requests = [(("sleep", 0.01), []) if i % 5 else (("exit", 1), []) for i in range(20)]
    outcomes = list(pool.imap(requests))
    assert sorted(o.tag for o in outcomes) == list(range(20))
    died = sorted(o.tag for o in outcomes if o.died)
    assert died == [0, 5, 10, 15]
    assert {o.slot for o in outcomes} == {0, 1}


def test_stop_ends_busy_children_too():
    pool = TaskPool(2, Doer).start()
    pids = pool.pids()
    pool.submit(0, ("sleep", 60))
    pool.stop(timeout=0.5)
    assert pids_gone(pids, 5)


def test_spawned_children_work_where_fork_is_not_used():
    with TaskPool(1, Echo, start_method="spawn") as pool:
        assert pool.run("x", [b"y"]).reply == ("x", [b"y"])
        child = psutil.Process(pool.pids()[0])
        assert "spawn" in " ".join(child.cmdline()) or child.ppid() == os.getpid()


def test_a_pool_left_running_does_not_hold_up_interpreter_exit():
    import subprocess
    import sys

    script = "from okplan.exec.pool import TaskPool, Echo\np = TaskPool(2, Echo).start()\nprint(p.run('x').reply)\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "('x', [])", done.stderr


class Turns:
    """A request is ``[seconds per unit, ...]``: run units while turns come; a unit of -1 kills the
    process. The reply lists the units it ran."""

    def __call__(self, header, blobs):
        from okplan.exec.pool import take_turn

        ran = []
        for i, seconds in enumerate(header):
            if not take_turn():
                break
            if seconds < 0:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(seconds)
            ran.append(i)
        return ran, []


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_units_not_started_are_taken_back_while_one_runs_and_none_twice(start_method):
    with TaskPool(1, Turns, start_method=start_method) as pool:
        pool.submit(0, [0, 0, 0], turns=3)
        outcomes = []
        assert wait_until(lambda: outcomes.extend(pool.poll(0.05)) or outcomes, 10)
        assert outcomes[0].reply[0] == [0, 1, 2] and pool.revoke(0) == 0
        for _ in range(5):
            # the second unit runs long: the supervisor takes the rest back meanwhile
            pool.submit(0, [0, 0.5, 0, 0, 0], turns=5)
            time.sleep(0.2)
            taken_back = pool.revoke(0)
            outcomes = []
            assert wait_until(lambda: outcomes.extend(pool.poll(0.05)) or outcomes, 10)
            ran = outcomes[0].reply[0]
            assert ran == [0, 1] and taken_back == 3           # every unit once: run, or taken back
            assert pool.revoke(0) == 0
        # a child that dies in a unit: its outcome says how many turns it had taken (it died in the last)
        pool.submit(0, [0, 0, -1, 0], turns=4, tag="t")
        outcomes = []
        assert wait_until(lambda: outcomes.extend(pool.poll(0.05)) or outcomes, 10)
        assert outcomes[0].died is not None and outcomes[0].turns_taken == 3 and outcomes[0].tag == "t"
        pool.submit(0, [0, 0], turns=2)                          # the next child starts with no stale turns
        outcomes = []
        assert wait_until(lambda: outcomes.extend(pool.poll(0.05)) or outcomes, 10)
        assert outcomes[0].reply[0] == [0, 1]
