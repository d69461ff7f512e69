"""The spill machinery itself (okplan/exec/external.py), below the operators: hash-partitioned merging at
every level, groups that stream from disk, and the batched external merge sort, against plain Python."""

from __future__ import annotations

import random
from operator import add

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from okplan.exec import external, external_sort
from okplan.exec.memory import TaskMemory, running
from okplan.exec.spill import SpillDir, SpilledRecords


@pytest.fixture
def memory(tmp_path):
    mem = TaskMemory(1, SpillDir(root=str(tmp_path)))  # a 1-byte budget: every check spills
    yield mem
    mem.spill_dir.remove()


def _fold_sum(d, records):
    for k, v in records:
        d[k] = d[k] + v if k in d else v


def _fold_group(d, records):
    for k, v in records:
        g = d.get(k)
        if g is None:
            d[k] = [v]
        else:
            g.append(v)


def _fold_side(pos):
    def fold(d, records):
        for k, v in records:
            g = d.get(k)
            if g is None:
                g = d[k] = ([], [])
            g[pos].append(v)
    return fold


def _merge_pairs(a, b):
    for x, y in zip(a, b):
        x.extend(y)
    return a


def _grouped(pairs):
    out: dict = {}
    for k, v in pairs:
        out.setdefault(k, []).append(v)
    return out


def test_sums_through_every_level_of_partitioning(memory, monkeypatch):
    # two sub-partitions per level: the merge of each is over the budget and partitions it again
    monkeypatch.setattr(external, "PARTITIONS", 2)
    pairs = [(i % 397, i) for i in range(4_000)]
    got = dict(external.combine([(pairs, _fold_sum)], add, memory))
    expected: dict = {}
    for k, v in pairs:
        expected[k] = expected.get(k, 0) + v
    assert got == expected
    assert memory.spills > 1
    assert not _files(memory)


def test_groups_keep_arrival_order_across_spills_and_levels(memory, monkeypatch):
    monkeypatch.setattr(external, "PARTITIONS", 3)
    pairs = [(random.Random(i).randrange(300), i) for i in range(3_000)]
    got = {k: list(vs) for k, vs in external.combine([(pairs, _fold_group)], None, memory, 1)}
    assert got == _grouped(pairs)


def test_a_hot_key_streams_from_disk_beside_small_groups(memory):
    pairs = [("hot", i) for i in range(5_000)] + [(i, i) for i in range(500)] + [("hot", -1)]
    got = dict(external.combine([(pairs, _fold_group)], None, memory, 1))
    assert type(got["hot"]) is SpilledRecords
    assert list(got["hot"]) == list(range(5_000)) + [-1]
    assert {k: list(v) for k, v in got.items() if k != "hot"} == {i: [i] for i in range(500)}
    assert memory.escaping


def test_cogroup_sides_merge_in_order(memory):
    left = [(i % 100, i) for i in range(1_500)] + [("hot", i) for i in range(3_000)]
    right = [(i % 50, -i) for i in range(300)] + [("hot", 7)]
    got = {k: (list(a), list(b)) for k, (a, b) in
           external.combine([(left, _fold_side(0)), (right, _fold_side(1))], _merge_pairs, memory, 2)}
    gl, gr = _grouped(left), _grouped(right)
    assert got == {k: (gl.get(k, []), gr.get(k, [])) for k in set(gl) | set(gr)}


def test_nothing_spilled_is_the_in_memory_dict(tmp_path):
    mem = TaskMemory(1 << 40, SpillDir(root=str(tmp_path)))
    pairs = [(3, 1), (1, 2), (3, 4)]
    assert list(external.combine([(pairs, _fold_sum)], add, mem)) == [(3, 5), (1, 2)]
    assert mem.spills == 0


def _files(memory):
    import os
    path = memory.spill_dir.path
    return os.listdir(path) if path else []


@settings(max_examples=40, deadline=None)
@given(keys=st.lists(st.integers(0, 30), max_size=3000), reverse=st.booleans(),
       batch=st.sampled_from([1, 2, 7, 100]))
def test_external_sort_is_sorted_and_stable(tmp_path_factory, keys, reverse, batch):
    records = [(k, i) for i, k in enumerate(keys)]
    mem = TaskMemory(1, SpillDir(root=str(tmp_path_factory.mktemp("sort"))))
    saved = external_sort.SORT_BATCH
    external_sort.SORT_BATCH = batch  # small batches: equal keys cross batch boundaries
    try:
        with running(mem):
            got = list(external_sort.external_sorted(iter(records), key=lambda r: r[0], reverse=reverse))
    finally:
        external_sort.SORT_BATCH = saved
        mem.spill_dir.remove()
    assert got == sorted(records, key=lambda r: r[0], reverse=reverse)


def test_external_sort_without_a_key(memory):
    values = [random.Random(i).random() for i in range(2_000)]
    with running(memory):
        assert list(external_sort.external_sorted(values)) == sorted(values)
        assert list(external_sort.external_sorted(values, reverse=True)) == sorted(values, reverse=True)
    assert not _files(memory)


Pair = __import__("collections").namedtuple("Pair", "k v")


def test_external_sort_keeps_every_record_as_it_was(memory):
    # pairs go to disk as key and value lists; a tuple subclass, a longer tuple, a list must not
    rng = random.Random(7)
    records = [rng.choice([(k, [k]), Pair(k, k), (k, k, k), [k, "x"]]) for k in
               (rng.randrange(50) for _ in range(3_000))]
    shared = ("same", None)
    records += [(k, shared) for k in range(40)]
    with running(memory):
        got = list(external_sort.external_sorted(records, key=lambda r: r[0]))
    assert got == sorted(records, key=lambda r: r[0])
    assert [type(r) for r in got] == [type(r) for r in sorted(records, key=lambda r: r[0])]
    assert memory.spills > 0 and not _files(memory)  # spilled, and its files are gone once read


@pytest.mark.parametrize("reverse", [False, True])
def test_external_sort_of_pairs_by_their_key_both_ways(memory, reverse):
    from operator import itemgetter
    rng = random.Random(3)
    records = [(rng.randrange(100), i) for i in range(5_000)]
    with running(memory):
        got = list(external_sort.external_sorted(iter(records), key=itemgetter(0), reverse=reverse))
    assert got == sorted(records, key=itemgetter(0), reverse=reverse)
    assert not _files(memory)


def test_external_sort_of_a_partition_a_few_budgets_big(tmp_path):
    # a budget some records fit in: several full buffers become runs, the rest stays in memory
    mem = TaskMemory(256 << 10, SpillDir(root=str(tmp_path)))
    rng = random.Random(11)
    records = [(rng.random(), str(i)) for i in range(8_000)]
    try:
        with running(mem):
            got = list(external_sort.external_sorted(records, key=lambda r: r[0], reverse=True))
        assert got == sorted(records, key=lambda r: r[0], reverse=True)
        assert mem.spills > 1 and not _files(mem)
    finally:
        mem.spill_dir.remove()
