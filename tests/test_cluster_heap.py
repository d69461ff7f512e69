"""A task process's heap (okplan/exec/cluster/heap.py): finished outputs are freed later, a piece at a
time, without changing anything another holder can still see, and only while no request waits."""

from __future__ import annotations

import gc
import os
import weakref

from cluster_helpers import wait_until

from okplan.exec.cluster.heap import PENDING_BYTES, PENDING_OUTPUTS, PIECE, TaskHeap
from okplan.exec.pool import TaskPool


class Box:
    """A record whose freeing can be observed (weakref)."""


def test_outputs_wait_until_tidy_then_go_piece_by_piece():
    heap = TaskHeap()
    boxes = [Box() for _ in range(3 * PIECE)]
    refs = [weakref.ref(b) for b in boxes]
    buckets = [[(i, b) for i, b in enumerate(boxes[:PIECE * 2])], [(0, b) for b in boxes[PIECE * 2:]]]
    del boxes
    heap.discard(buckets, nbytes=100)
    del buckets
    assert all(r() is not None for r in refs) and heap.pending_bytes == 100  # nothing freed yet
    looks = []
    heap.tidy(lambda: looks.append(1) or len(looks) > 2)  # a request arrives at the third look
    assert 0 < sum(r() is None for r in refs) < len(refs)  # stopped part-way
    heap.tidy(lambda: False)
    assert all(r() is None for r in refs) and heap.pending_bytes == 0


def test_what_someone_else_still_holds_is_never_changed():
    heap = TaskHeap()
    shared = list(range(5 * PIECE))
    inner = [1, 2, 3]
    heap.discard([shared, [inner, inner]], nbytes=10)
    heap.discard(shared, nbytes=10)
    heap.tidy(lambda: False)
    assert shared == list(range(5 * PIECE)) and inner == [1, 2, 3]


def test_big_outputs_are_freed_at_once_and_little_is_held():
    heap = TaskHeap()
    big = Box()
    ref = weakref.ref(big)
    heap.discard(big, nbytes=PENDING_BYTES + 1)
    del big
    gc.collect()
    assert ref() is None and heap.pending_bytes == 0
    kept = [Box() for _ in range(PENDING_OUTPUTS + 2)]
    refs = [weakref.ref(b) for b in kept]
    for b in kept:
        heap.discard(b, nbytes=1)
    del kept, b
    assert [r() is None for r in refs] == [True, True] + [False] * PENDING_OUTPUTS  # oldest first
    for _ in range(3):
        heap.discard([Box()], nbytes=PENDING_BYTES // 2)
    assert heap.pending_bytes <= PENDING_BYTES


class Idler:
    """Counts the calls of its ``idle`` hook (and says so in a file named by the first request); each
    request answers with the count."""

    def __init__(self):
        self.idles = 0
        self.mark = None

    def __call__(self, header, blobs):
        self.mark = self.mark or header
        return self.idles, []

    def idle(self, waiting):
        assert not waiting()
        self.idles += 1
        if self.mark:
            with open(self.mark, "a") as f:
                f.write("idle\n")


def test_a_child_does_its_put_off_work_while_no_request_waits(tmp_path):
    mark = str(tmp_path / "idle")
    with TaskPool(1, Idler) as pool:
        pool.run(mark)
        assert wait_until(lambda: os.path.exists(mark), 10)  # nothing waits: the child tidies up
        assert pool.run(mark).reply[0] >= 1
