"""The master's bookkeeping, driven message by message (its socket is real, its sends are recorded)."""

from __future__ import annotations

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
