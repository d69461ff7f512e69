"""local[N]: big jobs on N task processes, small ones in-process; deaths, pickling and __main__."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading

import pytest

from okplan import Context, TaskProcessDiedError
from okplan.exec.serialization import TaskPicklingError


@pytest.fixture(scope="module")
def pooled():
    with Context("local[2]", pool_min_records=0, pool_policy="pool") as ctx:
        yield ctx


def test_a_big_job_runs_on_the_task_processes_and_a_small_one_in_process():
    # adaptive planning off: it would run the 8 reduce partitions of collect() as one task (docs/ADAPTIVE.md)
    with Context("local[2]", pool_min_records=10_000, adaptive=False) as ctx:
        small = ctx.parallelize(range(1000), 4).map(lambda x: x + 1)
        big = ctx.range(0, 20_000, numSlices=4).map(lambda x: (x % 7, x)).reduceByKey(lambda a, b: a + b)
        assert "runs in-process: small job (1,000 records < 10,000)" in small.toDebugString()
        assert "runs on 2 task processes" in big.toDebugString()
        assert small.sum() == 500_500
        assert ctx._executor._pool.pids() == []  # not started for a small job
        assert sorted(big.collect()) == sorted(
            {k: sum(x for x in range(20_000) if x % 7 == k) for k in range(7)}.items())
        per = ctx.lastJobMetrics().tasks_per_worker
        # the map stage on the task processes; collect() sends every record back, so the result stage's
        # first task ran in-process and its time decided where the other three ran
        assert set(per) <= {"task process 0", "task process 1", "local"} and sum(per.values()) == 8
        assert sum(n for w, n in per.items() if w != "local") >= 4
        assert len(ctx._executor._pool.pids()) == 2


def test_local_1_and_plain_local_stay_in_process():
    for master in ("local[1]", "local"):
        with Context(master, pool_min_records=0) as ctx:
            ds = ctx.range(0, 100_000, numSlices=4).map(lambda x: x * 2)
            assert "runs " not in ds.toDebugString()
            assert ds.sum() == 9_999_900_000
            assert ctx.lastJobMetrics().tasks_per_worker == {"local": 4}


def test_the_default_context_uses_every_core():
    with Context() as ctx:
        assert ctx._executor.processes == (os.cpu_count() or 1)
        assert ctx.defaultParallelism == (os.cpu_count() or 1)


def test_a_task_whose_process_dies_once_is_run_again(pooled, tmp_path):
    marker = str(tmp_path / "died")

    def die_once(x):
        if x == 5 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(3)
        return x

    assert pooled.parallelize(range(10), 3).map(die_once).sum() == 45
    assert len(pooled._executor._pool.pids()) == 2


def test_a_task_that_always_kills_its_process_fails_the_job_with_the_cause(pooled):
    with pytest.raises(TaskProcessDiedError, match=r"stage 0, partition 1: the task's process exited with "
                                                   r"code 3 \(os._exit\?\) 3 times"):
        pooled.parallelize(range(10), 3).map(lambda x: os._exit(3) if x == 4 else x).count()
    assert pooled.parallelize(range(10), 3).sum() == 45


def test_an_unpicklable_closure_is_named_as_on_the_cluster(pooled):
    lock = threading.Lock()
    with pytest.raises(TaskPicklingError, match=r"the function of map at test_local_pool.py:\d+ cannot be "
                                                r"pickled: it holds a <_thread.lock>"):
        pooled.parallelize(range(10), 2).map(lambda x: (lock, x)).collect()


def test_functions_and_classes_of_main_work_on_the_task_processes(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        from okplan import Context

        class Point:
            def __init__(self, v):
                self.v = v

        def double(p):
            return Point(p.v * 2)

        with Context("local[2]", pool_min_records=0, pool_policy="pool") as ctx:
            ds = ctx.parallelize([Point(1), Point(2), Point(3)], 3).map(double)
            print(sum(p.v for p in ds.collect()), "runs on 2 task processes" in ds.toDebugString())
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["12", "True"]


def test_stop_leaves_no_processes_and_no_files():
    ctx = Context("local[2]", pool_min_records=0, pool_policy="pool")
    ctx.parallelize(range(100), 4).map(lambda x: (x % 3, x)).groupByKey().cache().count()
    pids = ctx._executor._pool.pids()
    work = ctx._executor._dir
    assert len(pids) == 2 and os.listdir(work)  # the cache's files; the job's own directory is gone
    assert all(not name.startswith("job-") for name in os.listdir(work))
    ctx.stop()
    assert not os.path.exists(work)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_task_gets_only_its_own_parallelized_partition(monkeypatch):
    from okplan.exec.pool import TaskPool

    sent: list[tuple[int, list, int]] = []
    submit = TaskPool.submit

    def recording(self, slot, header, blobs=(), tag=None):
        sent.append((header["partition"], header["src"], sum(map(len, blobs))))
        return submit(self, slot, header, blobs, tag)

    monkeypatch.setattr(TaskPool, "submit", recording)
    with Context("local[2]", pool_min_records=0, pool_policy="pool") as ctx:
        data = [bytes([i % 251]) * 1000 for i in range(400)]   # 400 kB in 4 partitions of 100 kB
        assert ctx.parallelize(data, 4).map(len).sum() == 400_000
    assert sorted(p for p, _, _ in sent) == [0, 1, 2, 3]
    for p, src, size in sent:
        assert [i for _, i in src] == [p]
        assert size < 160_000  # its own 100 kB (and the job's functions, once per process), not all 400 kB


def test_each_task_reads_the_source_partitions_union_coalesce_and_cartesian_route_to_it():
    from okplan.exec.local_pool import source_reads

    with Context("local[2]") as ctx:
        a, b = ctx.parallelize(list(range(6)), 3), ctx.parallelize(list(range(4)), 2)
        ds = a.union(b).coalesce(2).cartesian(ctx.parallelize(["x", "y"], 2))
        plan = ctx.session.prepare(ds._node, optimize_=False).physical
        root = plan.result_stage.root
        # coalesce groups the union's 5 partitions into 2; cartesian: task i = (left i // 2, right i % 2)
        groups = [[(op.records, i) for op, i in sorted(source_reads(root, t, set()), key=lambda r: (r[0].records, r[1]))]
                  for t in range(plan.result_stage.num_partitions)]
        assert len(groups) == 4
        for t, reads in enumerate(groups):
            assert (2, t % 2) in reads   # "xy": the right side's partition
            assert len([r for r in reads if r[0] != 2]) in (2, 3)   # the left's coalesced union partitions
    with Context("local[2]", pool_min_records=0, pool_policy="pool") as ctx:
        a, b = ctx.parallelize(list(range(6)), 3), ctx.parallelize(list(range(4)), 2)
        ds = a.union(b).coalesce(2).cartesian(ctx.parallelize(["x", "y"], 2))
        assert sorted(ds.collect()) == sorted((x, y) for x in list(range(6)) + list(range(4)) for y in "xy")
        assert set(ctx.lastJobMetrics().tasks_per_worker) <= {"task process 0", "task process 1"}


def test_a_job_whose_stages_move_every_record_needs_more_input_for_the_pool():
    with Context("local[2]", pool_min_records=10_000) as ctx:
        pairs = ctx.range(0, 15_000, numSlices=4).map(lambda x: (x % 7, x))
        assert "runs on 2 task processes" in pairs.reduceByKey(lambda a, b: a + b).toDebugString()  # combined
        grouped = pairs.groupByKey().mapValues(len)
        assert "runs in-process: small job (15,000 records < 20,000 for 1 stage moving every record)" \
            in grouped.toDebugString()
        assert sorted(grouped.collect()) == [(k, len(range(k, 15_000, 7))) for k in range(7)]
        assert set(ctx.lastJobMetrics().tasks_per_worker) == {"local"}   # in-process (adaptive may read fewer)


def test_a_stage_that_moves_every_record_probes_its_first_partition_in_process():
    def costly(x):
        sum(range(40_000))   # a millisecond or so of CPU per record: the pool pays
        return (x % 3, x)

    with Context("local[2]", pool_min_records=0, adaptive=False) as ctx:
        ds = ctx.parallelize(range(120), 6).map(costly).groupByKey(2).mapValues(len)
        assert "stage 0 moves every record: it runs its first partition in-process" in ds.toDebugString()
        assert sorted(ds.collect()) == [(0, 40), (1, 40), (2, 40)]
        per = ctx.lastJobMetrics().tasks_per_worker
        text = ctx.session.explain(ds._node, analyze=True)   # the job that just ran
        # partition 1 went to a task process while 0 ran here; of the other 4, 2 queued for the one task
        # process beside this one and 2 here at the same time is the quickest (pool_share)
        assert ("ran stage 0: partition 0 in-process (" in text and "partition 1 on the task processes meanwhile, "
                "then the other 4 split: 2 on the task processes, 2 in-process" in text), text
        # a queued task that no process started by the time this one is free is taken back (a loaded machine)
        taken = re.search(r"this process took back partitions? (\d+)(?:-(\d+))?", text)
        back = 0 if taken is None else 1 + int(taken.group(2) or taken.group(1)) - int(taken.group(1))
        # (and the 2 tasks of the result stage, which reads blocks held here, run where their probe says)
        assert sum(n for w, n in per.items() if w != "local") >= 3 - back and sum(per.values()) == 8
        assert per["local"] >= 3 + back

        # cheap functions and every record back to this process: the rest stays here
        cheap = ctx.parallelize(range(200_000), 4).map(lambda x: x + 1)
        assert cheap.collect() == list(range(1, 200_001))
        per = ctx.lastJobMetrics().tasks_per_worker   # partition 1 went ahead while 0 ran here
        assert per["local"] == 3 and sum(per.values()) == 4
        assert "then the other 2 in-process" in ctx.session.explain(cheap._node, analyze=True)


def test_pool_share_weighs_what_crosses_once_per_process_and_the_task_processes_beside_this_one():
    from okplan.exec.local_pool import pool_share

    # one task process beside this one (N - 1 of 2), busy with the task it took ahead until 0.3 s
    k, there, here = pool_share(0.25, 0, 0, 1, 2, False, ahead=1)
    assert (k, round(here, 2)) == (0, 0.25)   # the last task queued there would end at 0.05 + 0.3: here is sooner
    assert pool_share(0.25, 0, 0, 2, 2, False, ahead=1)[0] == 1   # of two: one here, one there meanwhile
    # costly tasks: one of the other 3 goes there, after the one ahead
    assert pool_share(1.0, 0, 0, 3, 2, False, ahead=1)[0] == 1
    # a broadcast side decoded once per process counts once: a second task there pays nothing for it
    assert pool_share(1.0, 0, 0, 3, 2, False, setup_records=4_000_000, ahead=1)[0] == 1
    assert pool_share(1.0, 4_000_000, 0, 3, 2, False, ahead=1)[0] == 0


def test_a_grouped_shuffle_moves_its_groups_and_lighter_values():
    from okplan.exec.local_pool import moved_out

    with Context("local[2]", pool_min_records=0) as ctx:
        grouped = ctx.range(0, 100, numSlices=2).map(lambda x: (x % 5, x)).groupByKey(2)
        paired = ctx.range(0, 100, numSlices=2).map(lambda x: (x % 5, x)).partitionBy(2)
        g, p = (ctx.session.plan(d._node)[3].stages[0] for d in (grouped, paired))
    assert g.output.grouped and not p.output.grouped
    buckets = [[(0, [0, 5, 10]), (2, [2, 7])], [(1, [1, 6])]]
    assert moved_out(g, 6, buckets) == 3 + int(6 * 0.4)
    assert moved_out(p, 6, [[(0, 0)] * 6]) == 6


def test_a_mixed_stage_runs_one_task_process_beside_this_one_and_the_one_that_ran_it_first(monkeypatch):
    from okplan.exec.pool import TaskPool

    slots: list[tuple[int, int]] = []   # (slot, tasks running there and elsewhere on the pool)
    threads: list[str] = []
    submit = TaskPool.submit

    def recording(self, slot, header, blobs=(), tag=None):
        slots.append((slot, sum(s.busy for s in self.slots)))
        threads.append(threading.current_thread().name)
        return submit(self, slot, header, blobs, tag)

    def costly(x):
        sum(range(40_000))   # the pool pays: some tasks queue for the task process
        return (x % 3, x)

    monkeypatch.setattr(TaskPool, "submit", recording)
    with Context("local[2]", pool_min_records=0, adaptive=False) as ctx:
        ds = ctx.parallelize(range(120), 6).map(costly).partitionBy(2)
        assert sorted(ds.glom().map(len).collect()) == [40, 80]
    map_slots = [s for s, _ in slots][:3]
    assert all(busy == 0 for _, busy in slots)   # never two task processes on a stage this one works on
    assert len(set(map_slots)) == 1, slots     # the map stage's tasks all went to the process that ran its first
    # the queued ones went out as soon as it was free, while this process ran its own share
    assert "okplan-local-feeder" in threads
    assert not [t for t in threading.enumerate() if t.name == "okplan-local-feeder"]   # none left behind


def test_a_task_process_that_dies_in_a_mixed_stage_is_replaced_and_its_task_not_taken_back(tmp_path):
    marker = str(tmp_path / "died")
    client = os.getpid()

    def die_once_there(x):
        if os.getpid() != client and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(3)
        return x + 1

    with Context("local[2]", pool_min_records=0) as ctx:
        assert ctx.parallelize(range(400), 4).map(die_once_there).collect() == list(range(1, 401))
        per = ctx.lastJobMetrics().tasks_per_worker
        # the task that partition 1's process died in ran again on its successor, never here
        assert os.path.exists(marker) and sum(n for w, n in per.items() if w != "local") >= 1
        assert ctx._executor._pool._pool.replaced == 1 and len(ctx._executor._pool.pids()) == 2


def test_blocks_held_here_are_written_once_before_the_task_processes_can_read_them():
    from okplan.exec.local_pool import pool_share

    # 4 partitions of 0.1 s read 100k records each, held here: writing all 400k first costs 60 ms
    assert pool_share(0.1, 100_000, 0, 3, 2, False, held=400_000)[0] == 1
    assert pool_share(0.1, 100_000, 0, 3, 2, False, held=4_000_000)[0] == 0   # 0.6 s of writing first
    with Context("local[2]", pool_min_records=0, adaptive=False) as ctx:
        ds = ctx.parallelize(range(40_000), 4).map(lambda x: (x % 100, x)).groupByKey(4).mapValues(len)
        assert sorted(ds.collect()) == [(k, 400) for k in range(100)]   # wherever each stage's tasks ran
