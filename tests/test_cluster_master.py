"""The master's bookkeeping, driven message by message (its socket is real, its sends are recorded)."""

from __future__ import annotations

import time

import pytest

from okplan.exec.cluster import protocol as P
from okplan.exec.cluster.master import Master
from okplan.exec.cluster.spec import encode_spec

SPEC = {"job_id": "j", "client": "c", "stages": [{"id": 0, "n": 1, "parents": (), "kind": "result"}],
        "partitions": [0], "shuffles": {}, "sources": {}, "cache_scopes": {}, "ttl": 60, "cache_ttl": None,
        "inline_max": 1, "sys_path": []}
HELLO = P.Message("worker_hello", {"name": "w", "slots": 1, "versions": P.ADVERTISED})


@pytest.fixture
def master():
    m = Master("tcp://127.0.0.1:0", "redis://127.0.0.1:1/0", secret="s")
    m.sent = []
    m._send = lambda ident, kind, body=None, blobs=(): m.sent.append((ident, kind)) or True
    m.store.reachable = lambda timeout=0.5: True
    m._on_submit(b"client", P.Message("submit", {"job_id": "j"}, [encode_spec(SPEC), b"job"]))
    yield m
    m.close()


def test_repeated_hellos_of_a_busy_worker_do_not_requeue_its_task(master):
    master._on_worker_hello(b"w", HELLO)
    master._schedule()
    for _ in range(4):                       # one hello per RESET that queued up while it worked
        master._on_worker_hello(b"w", HELLO)
        master._schedule()
    stage = master.jobs["j"].stages[0]
    assert stage.attempts == {} and master.jobs["j"].state == "running"
    assert [k for _, k in master.sent].count(P.TASK) == 1 and list(master.idle) == []


def test_an_unknown_worker_is_told_to_say_hello_once(master):
    for _ in range(5):
        master._on_heartbeat(b"ghost!hb", P.Message("heartbeat", {}))
    assert [k for _, k in master.sent].count(P.RESET) == 1


def test_a_worker_that_forgot_a_job_gets_it_again_without_an_attempt_counted(master):
    master._on_worker_hello(b"w", HELLO)
    for attempt in range(10):
        master._schedule()
        master._on_failed(b"w", P.Message("failed", {"job_id": "j", "stage": 0, "partition": 0, "attempt": attempt,
                                                     "reason": "infra", "message": "forgot", "resend_job": True}))
    assert master.jobs["j"].stages[0].attempts == {} and master.jobs["j"].state == "running"


def test_a_late_report_of_a_given_up_attempt_deletes_the_forgotten_jobs_keys_again(master):
    deleted = []
    master._delete = deleted.append
    master.jobs["j"].state = "failed"
    master._maybe_forget(master.jobs["j"])
    assert "j" not in master.jobs and len(deleted) == 1
    # the attempt wrote its output after the job's keys were deleted, then reports
    master._on_done(b"w", P.Message("done", {"job_id": "j", "stage": 0, "partition": 0, "attempt": 0,
                                             "metrics": {}, "acc": [], "stored": False}))
    assert deleted[1:] == [deleted[0]]



def test_a_finished_job_tells_its_client_before_its_workers(master):
    deleted = []
    master._delete = deleted.append
    master._on_worker_hello(b"w", HELLO)
    master._schedule()
    master.sent.clear()
    master._on_done(b"w", P.Message("done", {"job_id": "j", "stage": 0, "partition": 0, "attempt": 0,
                                             "metrics": {}, "acc": [], "stored": False}, [b"v"]))
    # the keys go first (the client never sees a finished job's keys); the results ride in the JOB_DONE
    assert [k for _, k in master.sent] == [P.JOB_DONE] and len(deleted) == 1
    assert "j" not in master.jobs
    # the worker hears at the next tick (or with its next TASK), not while the client finishes
    master._tick(time.monotonic())
    assert [k for _, k in master.sent if k != P.HEARTBEAT] == [P.JOB_DONE, P.JOB_END]

# -- batches of short tasks -------------------------------------------------------------------------

MANY = {**SPEC, "stages": [{"id": 0, "n": 40, "parents": (), "kind": "result"}], "partitions": list(range(40))}


@pytest.fixture
def busy():
    """A master with one 40-task job and one worker of one slot; its TASK messages are recorded."""
    m = Master("tcp://127.0.0.1:0", "redis://127.0.0.1:1/0", secret="s")
    m.tasks = []
    m._send = lambda ident, kind, body=None, blobs=(): (kind == P.TASK and m.tasks.append(body)) or True
    m.store.reachable = lambda timeout=0.5: True
    m._on_submit(b"client", P.Message("submit", {"job_id": "j"}, [encode_spec(MANY), b"job"]))
    m._on_worker_hello(b"w", HELLO)
    yield m
    m.close()


def _done(m, p, seconds=0.001):
    m._on_done(b"w", P.Message("done", {"job_id": "j", "stage": 0, "partition": p, "attempt": 0,
                                        "metrics": {"seconds": seconds}, "acc": b"", "stored": False}, [b"v"]))


def _partitions(body):
    return [body["partition"]] + [p for p, _ in body.get("more", ())]


def test_short_tasks_go_in_batches_that_hold_one_credit(busy):
    busy._schedule()
    assert _partitions(busy.tasks[-1]) == [0]          # nothing timed yet: one task
    _done(busy, 0)
    busy._schedule()
    batch = _partitions(busy.tasks[-1])
    # 1 ms tasks: a batch of ~20 ms, and at most half the pending tasks per slot (load balancing)
    assert 1 < len(batch) <= 20 and batch == list(range(1, 1 + len(batch)))
    for p in batch[:-1]:
        _done(busy, p)
        assert not busy.idle                            # the batch's credit comes back with its last task
    _done(busy, batch[-1])
    assert list(busy.idle) == [b"w"]
    busy._flush_results()                               # ... and its results go to the client at once


def test_long_tasks_are_not_batched(busy):
    busy._schedule()
    _done(busy, 0, seconds=0.5)
    busy._schedule()
    assert _partitions(busy.tasks[-1]) == [1]


def test_tasks_of_a_batch_that_never_ran_are_queued_again_without_an_attempt(busy):
    busy._schedule()
    _done(busy, 0)
    busy._schedule()
    first, *rest = _partitions(busy.tasks[-1])
    busy._on_failed(b"w", P.Message("failed", {"job_id": "j", "stage": 0, "partition": first, "attempt": 0,
                                               "reason": "crashed", "message": "was killed by signal SIGKILL"}))
    for p in rest:
        busy._on_failed(b"w", P.Message("failed", {"job_id": "j", "stage": 0, "partition": p, "attempt": 0,
                                                   "reason": "infra", "requeue": True, "message": "not run"}))
    stage = busy.jobs["j"].stages[0]
    assert stage.attempts == {} and stage.crashes == {first: 1} and set(rest) <= set(stage.pending)
    assert list(busy.idle) == [b"w"] and busy.jobs["j"].retries == 1
    busy._schedule()
    assert _partitions(busy.tasks[-1]) == [first]      # after a crash, one by one: the next one is blamed right


@pytest.mark.parametrize("records, batches", [(4000, [40]), (50_000, [20, 20])])
def test_a_stage_over_a_small_in_memory_input_is_batched_from_the_start(records, batches):
    m = Master("tcp://127.0.0.1:0", "redis://127.0.0.1:1/0", secret="s")
    try:
        m.tasks = []
        m._send = lambda ident, kind, body=None, blobs=(): (kind == P.TASK and m.tasks.append(body)) or True
        small = {**MANY, "stages": [{**MANY["stages"][0], "records": records}]}
        m._on_submit(b"client", P.Message("submit", {"job_id": "j"}, [encode_spec(small), b"job"]))
        m._on_worker_hello(b"w", P.Message("worker_hello", {**HELLO.body, "slots": 2}))
        m._schedule()
        # a very small stage: one batch on one slot; a small one: one batch per slot
        assert [len(_partitions(b)) for b in m.tasks] == batches
        assert all(b["budget"] > 0 for b in m.tasks)
        if len(batches) == 1:
            # past its budget, the batch hands back what it did not start: then one task per message
            rest = _partitions(m.tasks[0])[1:]
            for p in rest:
                m._on_failed(b"w", P.Message("failed", {"job_id": "j", "stage": 0, "partition": p, "attempt": 0,
                                                        "reason": "infra", "requeue": True, "late": True,
                                                        "message": "not run"}))
            m._schedule()
            assert [_partitions(b) for b in m.tasks[1:]] == [[rest[0]]]
            assert m.jobs["j"].stages[0].attempts == {}
    finally:
        m.close()


def test_a_clients_wake_wakes_the_next_idle_worker_at_most_once_per_moment(master):
    master._on_worker_hello(b"w", HELLO)
    master._on_worker_hello(b"v", P.Message("worker_hello", {**HELLO.body, "name": "v", "slots": 2}))
    master.sent.clear()
    for _ in range(50):                                  # a flood of WAKEs costs the worker one
        master._dispatch_message([_Frame(b"client"), _Frame(P.pack(P.WAKE)[0])])
    assert master.sent == [(b"w", P.WAKE)]               # the one the next task goes to
    master._schedule()                                   # w's slot takes the job's task: no longer idle
    master.sent.clear()
    master._dispatch_message([_Frame(b"client"), _Frame(P.pack(P.WAKE)[0])])
    assert master.sent == [(b"v", P.WAKE)]


class _Frame:
    def __init__(self, data: bytes):
        self.bytes = data

    def __len__(self) -> int:
        return len(self.bytes)


def test_a_stage_over_few_records_of_earlier_outputs_is_batched_from_the_start():
    from operator import add

    from okplan import Context
    from okplan.exec.cluster.spec import build_spec
    from okplan.physical.stage import Materialize

    with Context() as ctx:
        pairs = ctx.parallelize([(i % 5, i) for i in range(100)], 4)
        plan = ctx.session.plan(pairs.reduceByKey(add, 4).map(lambda kv: kv)._node)[3]
        spec = build_spec("j", "c", plan, [0, 1, 2, 3])
        # the map stage reads 100 parallelized records; the reduce stage what the map stage writes
        assert [(s.get("records"), s.get("plus_parents", False)) for s in spec["stages"]] == [(100, False), (0, True)]
        cached = pairs.map(lambda kv: kv).cache()
        cached.count()
        plan = ctx.session.plan(cached.map(lambda kv: kv)._node)[3]
        reads = [s for s in plan.stages if not isinstance(s.output, Materialize)][-1]
        cache_id = next(op.cache_id for op in _walk(reads.root) if hasattr(op, "cache_id"))
        # a cache of an earlier job: known when the client knows what that job wrote
        assert "records" not in build_spec("j", "c", plan, [0])["stages"][-1]
        assert build_spec("j", "c", plan, [0], known_records={cache_id: 100})["stages"][-1]["records"] == 100
    # the master adds the parent's records once it ran: 100 records in all, one batch on one slot
    m = Master("tcp://127.0.0.1:0", "redis://127.0.0.1:1/0", secret="s")
    try:
        m.tasks = []
        m._send = lambda ident, kind, body=None, blobs=(): (kind == P.TASK and m.tasks.append(body)) or True
        m._on_submit(b"client", P.Message("submit", {"job_id": "j"}, [encode_spec(spec), b"job"]))
        m._on_worker_hello(b"w", P.Message("worker_hello", {**HELLO.body, "slots": 2}))
        m._schedule()
        assert [_partitions(b) for b in m.tasks] == [[0, 1, 2, 3]]
        for p in range(4):
            m._on_done(b"w", P.Message("done", {"job_id": "j", "stage": 0, "partition": p, "attempt": 0,
                                                "metrics": {"records_out": 25, "seconds": 0.001},
                                                "acc": b"", "stored": False}))
        m._schedule()
        assert [_partitions(b) for b in m.tasks[1:]] == [[0, 1, 2, 3]]
    finally:
        m.close()


def _walk(op):
    yield op
    for child in op.children():
        yield from _walk(child)
