"""Hybrid hash aggregation (okplan/exec/external.py ``_Merger``) and marshalled spill batches
(okplan/exec/spill.py): a spill writes only the biggest sub-partitions and keeps merging the others in
memory; answers, value order and errors are the in-memory ones, and spill files are removed."""

from __future__ import annotations

import os
import pickle
from functools import partial
from operator import add

import pytest

from okplan.exec import external
from okplan.exec.memory import Gauge, TaskMemory
from okplan.exec.spill import RunWriter, SpillDir, read_batches, read_pickled_batches
from okplan.exec.task import _GROUPING, NotAPairError, NotHashableKeyError, _fold_values
from test_external import _fold_side, _fold_sum, _grouped, _merge_pairs


class _ItemsGauge(Gauge):
    """A gauge that judges by items alone (32 bytes each), so that when a spill happens does not depend
    on how the process's resident memory moves."""

    __slots__ = ()

    def over(self, items: int) -> bool:
        return items * self.per_item > self.limit


@pytest.fixture
def memory(tmp_path, monkeypatch):
    """A budget of 2,000 items: input of 20,000 records spills several times and keeps some of it."""
    monkeypatch.setattr(TaskMemory, "gauge", lambda self: _ItemsGauge(self.budget, 64))
    mem = TaskMemory(32 * 2_000, SpillDir(root=str(tmp_path)))
    yield mem
    mem.spill_dir.remove()


def _merger(memory, width, merge=None):
    return external._Merger(memory, merge, width, memory.gauge(), 0, {})


def _written(merger) -> int:
    return sum(r.count for runs in merger.spills for r in runs.values())


def _files(memory):
    path = memory.spill_dir.path
    return os.listdir(path) if path else []


def test_groups_spill_only_some_sub_partitions_and_keep_arrival_order(memory):
    pairs = [((i * 7919) % 1_000, i) for i in range(20_000)] + [("hot", i) for i in range(3_000)]
    merger = _merger(memory, 1)
    merger.fill(pairs, partial(_fold_values, agg=_GROUPING, kind="groupByKey"))
    assert merger.spills, "the budget was reached"
    assert any(not o for o in merger.out), "some sub-partitions stayed in memory"
    assert _written(merger) < len(pairs), "kept sub-partitions are not written"
    got = {k: list(vs) for k, vs in merger.items()}
    assert got == _grouped(pairs)
    # merged runs are gone; a group streaming from disk keeps its file until the job's directory goes
    assert not [f for f in _files(memory) if f.startswith("combine")]


def test_sums_keep_some_sub_partitions(memory):
    pairs = [(i % 3_000, i) for i in range(20_000)]
    merger = _merger(memory, 0, add)
    merger.fill(pairs, _fold_sum)
    assert merger.spills and any(not o for o in merger.out)
    expected: dict = {}
    for k, v in pairs:
        expected[k] = expected.get(k, 0) + v
    assert dict(merger.items()) == expected
    assert not _files(memory)


def test_cogroup_sides_keep_some_sub_partitions(memory):
    left = [(i % 700, i) for i in range(8_000)]
    right = [(i % 900, -i) for i in range(8_000)]
    got = {k: (list(a), list(b)) for k, (a, b) in
           external.combine([(left, _fold_side(0)), (right, _fold_side(1))], _merge_pairs, memory, 2)}
    gl, gr = _grouped(left), _grouped(right)
    assert got == {k: (gl.get(k, []), gr.get(k, [])) for k in set(gl) | set(gr)}
    assert memory.spills


@pytest.mark.parametrize("bad, error", [(7, NotAPairError), (([1], 2), NotHashableKeyError)])
def test_a_bad_record_after_a_spill_fails_as_in_memory(memory, bad, error):
    records = [(i % 500, i) for i in range(10_000)] + [bad]
    with pytest.raises(error):
        list(external.combine([(records, partial(_fold_values, agg=_GROUPING, kind="groupByKey"))], None, memory, 1))


class _Point:
    def __init__(self, x):
        self.x = x

    def __eq__(self, other):
        return type(other) is _Point and other.x == self.x


def test_spill_batches_are_marshalled_when_they_can_be_and_pickled_otherwise(tmp_path):
    d = SpillDir(root=str(tmp_path))
    shared = "shared-value"
    builtins = [(i, [shared, i * 0.5, None, (True, b"x")]) for i in range(2_000)]
    mixed = [(i, _Point(i)) for i in range(100)]
    with RunWriter(d, "demo") as w:
        a, b, c = w.write(builtins), w.write(mixed), w.write(builtins[:10])
    assert [r for batch in read_batches(a) for r in batch] == builtins
    assert [r for batch in read_batches(b) for r in batch] == mixed
    assert [r for batch in read_batches(c) for r in batch] == builtins[:10]  # pickled from then on
    # shared references stay shared, as with pickle
    first = next(read_batches(a))
    assert first[0][1][0] is first[1][1][0]
    # a reader of pickled batches (a cluster's spilled bucket) gets pickles whatever was written
    assert [r for raw in read_pickled_batches(a) for r in pickle.loads(raw)] == builtins
    d.remove()


def test_runs_that_may_be_shipped_are_pickled(tmp_path):
    d = SpillDir(root=str(tmp_path), wire=True)
    with RunWriter(d, "buckets") as w:
        run = w.write([(1, 2)] * 100)
    with open(run.path, "rb") as f:
        assert int.from_bytes(f.read(8), "little") < 1 << 63  # no marshal flag
    assert RunWriter(d, "combine", private=True).marshal
    d.remove()


def test_a_big_task_freezes_the_heap_until_it_ends(tmp_path, monkeypatch):
    import gc

    from okplan.exec import memory as memory_module
    from okplan.exec.memory import running
    from okplan.exec.spill import paused_gc

    monkeypatch.setattr(memory_module, "FREEZE_AFTER", 1_000)
    gc.unfreeze()
    mem = TaskMemory(1 << 30, SpillDir(root=str(tmp_path)))
    try:
        with running(mem):
            with paused_gc():
                rows = [(i, [i]) for i in range(2_000)]  # okplan's own containers, no garbage
            assert gc.get_freeze_count() > len(rows)
        mem.thaw()
        assert gc.get_freeze_count() == 0
        # outside a task nothing is frozen
        with paused_gc():
            more = [[i] for i in range(2_000)]
        assert gc.get_freeze_count() == 0 and more
    finally:
        gc.unfreeze()
        mem.spill_dir.remove()
