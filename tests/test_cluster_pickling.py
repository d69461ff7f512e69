"""What crosses to the workers: functions named when they cannot be pickled, records of classes from
the user's script, accumulator updates that cannot be pickled."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from okplan import Context
from okplan.exec.serialization import TaskPicklingError, dumps_function

def test_the_unpicklable_function_is_named_wherever_it_sits(local_ctx):
    # regression: the diagnosis walked the operator tree with a variable it had overwritten
    lock = threading.Lock()

    def holds_a_lock(x):
        with lock:
            return x

    ds = local_ctx.parallelize([(1, 2)], 2).map(holds_a_lock).filter(lambda kv: True)
    plan = local_ctx._plan(ds._node)[3]
    with pytest.raises(TaskPicklingError, match=r"the function of map at test_cluster_pickling.py:\d+ cannot be pickled: it holds a <_thread.lock>"):
        dumps_function(({s.id: s for s in plan.stages}, None))


@pytest.fixture(scope="module")
def cluster():
    with Context("local-cluster[1]") as ctx:
        yield ctx


def test_an_unpicklable_accumulator_update_is_the_users_error_and_the_worker_lives(cluster):
    class LockParam:
        def zero(self, value):
            return []

        def addInPlace(self, acc, value):
            return acc + value

    acc = cluster.accumulator([], LockParam())
    with pytest.raises(TaskPicklingError):
        cluster.parallelize([1, 2], 1).foreach(lambda x: acc.add([threading.Lock()]))
    assert cluster.parallelize(range(5), 2).sum() == 10


def test_records_of_classes_defined_in_the_users_script_reach_the_workers(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        from okplan import Context

        class Point:
            def __init__(self, v):
                self.v = v

        with Context("local-cluster[1]") as ctx:
            print(sum(p.v for p in ctx.parallelize([Point(1), Point(2)], 2).collect()),
                  ctx.parallelize([1, 2], 2).map(Point).map(lambda p: p.v * 10).sum())
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "30"]


def test_an_unpicklable_result_record_is_the_users_error_and_the_master_lives(cluster):
    # regression: an error raised after run_task (writing the output) reported stage None and the
    # master died on it
    with pytest.raises(TaskPicklingError, match="records must be picklable"):
        cluster.parallelize([1, 2], 2).map(lambda x: threading.Lock()).collect()
    assert cluster.parallelize(range(5), 2).map(lambda x: x * 2).sum() == 20
