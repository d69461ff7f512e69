"""Bounded memory: with a tiny task budget every wide operator spills to disk and still gives the
in-memory answer, on every executor; spill directories are gone after success, failure and a killed
worker; concurrent jobs never share spill files; blocks of any size go through the cluster's store."""

from __future__ import annotations

import contextlib
import os
import threading
from operator import add

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okplan import Context
from okplan.errors import ConfigurationError
from okplan.exec.memory import parse_size
from okplan.exec.spill import SpillDir, SpilledRecords, sweep_stale, write_run

from cluster_helpers import cluster_context, wait_until


def _spill_dirs(root: str) -> list[str]:
    return [n for n in os.listdir(root) if n.startswith("okplan-spill-")]


@contextlib.contextmanager
def budget(ctx: Context, size: str | int):
    """Run ``ctx``'s jobs with another task budget (the executor reads it per job)."""
    saved = ctx.executor.task_memory
    ctx.executor.task_memory = parse_size(size)
    try:
        yield
    finally:
        ctx.executor.task_memory = saved


def wide_answers(ctx: Context, data: list, other: list, slices: int = 3) -> dict:
    d = ctx.parallelize(data, slices)
    o = ctx.parallelize(other, 2)
    return {
        "reduceByKey": sorted(d.reduceByKey(add).collect()),
        "foldByKey": sorted(d.foldByKey(0, add).collect()),
        "aggregateByKey": sorted(d.aggregateByKey((0, 0), lambda a, v: (a[0] + v, a[1] + 1),
                                                  lambda a, b: (a[0] + b[0], a[1] + b[1])).collect()),
        "combineByKey": sorted(d.combineByKey(lambda v: [v], lambda a, v: a + [v], lambda a, b: a + b)
                               .mapValues(sorted).collect()),
        "groupByKey": sorted((k, sorted(vs)) for k, vs in d.groupByKey().collect()),
        "distinct": sorted(d.distinct().collect()),
        "sortByKey": d.sortByKey().collect(),
        "sortByKey desc": d.sortByKey(False, 2).collect(),
        "sortBy": d.sortBy(lambda kv: (kv[1], kv[0])).collect(),
        "join": sorted(d.join(o).collect()),
        "leftOuterJoin": sorted(d.leftOuterJoin(o).collect(), key=repr),
        "fullOuterJoin": sorted(d.fullOuterJoin(o).collect(), key=repr),
        "cogroup": sorted((k, (sorted(a), sorted(b))) for k, (a, b) in d.cogroup(o).collect()),
        "subtractByKey": sorted(d.subtractByKey(o).collect()),
        "countByKey": sorted(d.countByKey().items()),
        "repartition": sorted(d.repartition(2).collect()),
    }


# -- the property: spilling never changes an answer ------------------------------------------------------

KEYS = st.one_of(st.integers(-40, 40), st.sampled_from(["a", "b", "c", "dd", ""]))
PAIRS = st.lists(st.tuples(KEYS, st.integers(-1000, 1000)), max_size=600)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=PAIRS, other=st.lists(st.tuples(KEYS, st.integers()), max_size=60),
       size=st.sampled_from(["1", "256", "4k", "1m"]))
def test_every_wide_operator_gives_the_in_memory_answer_when_it_spills(local_ctx, data, other, size):
    # sortByKey of mixed int/str keys cannot compare them: keep the keys of one sort comparable
    data = [(str(k), v) for k, v in data]
    other = [(str(k), v) for k, v in other]
    expected = wide_answers(local_ctx, data, other)
    with budget(local_ctx, size):
        got = wide_answers(local_ctx, data, other)
    assert got == expected


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(data=PAIRS, other=st.lists(st.tuples(KEYS, st.integers()), max_size=60),
       size=st.sampled_from(["1", "2k", "1m"]))
def test_the_property_holds_on_every_executor(ctx, data, other, size):
    data = [(str(k), v) for k, v in data]
    other = [(str(k), v) for k, v in other]
    expected = wide_answers(ctx, data, other)
    with budget(ctx, size):
        got = wide_answers(ctx, data, other)
    assert got == expected


def test_every_wide_operator_spills_on_every_executor(ctx):
    data = [(i % 37, i) for i in range(6000)] + [("hot", i) for i in range(3000)]
    data = [(str(k), v) for k, v in data]
    other = [(str(k), -k) for k in range(0, 50, 3)] + [("hot", 1), ("hot", 2)]
    expected = wide_answers(ctx, data, other)
    with budget(ctx, "2k"):
        got = wide_answers(ctx, data, other)
        ctx.parallelize(data, 3).groupByKey().count()
        spilled = sum(s.spill_bytes for s in ctx.lastJobMetrics().stages.values())
    assert got == expected
    assert spilled > 0


def test_a_key_bigger_than_the_budget_streams_its_values_from_disk(local_ctx):
    hot = [("hot", i) for i in range(40_000)] + [("cold", 1)]
    with budget(local_ctx, "64k"):
        grouped = local_ctx.parallelize(hot, 2).groupByKey()
        inside = dict(grouped.mapValues(lambda vs: (type(vs).__name__, len(vs), sum(vs), list(vs)[:3])).collect())
        collected = dict(grouped.collect())
    assert inside["hot"] == ("SpilledRecords", 40_000, sum(range(40_000)), [0, 1, 2])
    assert inside["cold"][1:3] == (1, 1)
    # what leaves the task is a plain list: the spill files are gone by then
    assert type(collected["hot"]) is list and collected["hot"] == list(range(40_000))


def test_a_hot_key_join_streams(local_ctx):
    left = [("k", i) for i in range(3000)]
    right = [("k", j) for j in range(40)]
    with budget(local_ctx, "16k"):
        n = local_ctx.parallelize(left, 2).join(local_ctx.parallelize(right, 2)).count()
    assert n == 3000 * 40


def test_cached_partitions_go_to_disk_and_survive_jobs(local_ctx):
    with budget(local_ctx, "1k"):
        c = local_ctx.parallelize([(i % 5, "x" * 50) for i in range(20_000)], 2).map(lambda kv: kv).cache()
        assert c.count() == 20_000
    assert sorted(c.collect()) == sorted((i % 5, "x" * 50) for i in range(20_000))
    parts = local_ctx.executor.cache.values()
    assert any(type(p) is SpilledRecords for cached in parts for p in cached)
    c.unpersist()


# -- spill directories ---------------------------------------------------------------------------------

@pytest.fixture
def spill_root(tmp_path, monkeypatch):
    monkeypatch.setenv("OKPLAN_LOCAL_DIR", str(tmp_path))
    return str(tmp_path)


def test_spill_directories_are_removed_after_success_and_failure(spill_root):
    with Context("local[2]", task_memory="1k") as ctx:
        d = ctx.parallelize([(i % 11, i) for i in range(5000)], 2)
        assert len(d.groupByKey().collect()) == 11
        assert _spill_dirs(spill_root) == []

        def fail(kv):
            raise ValueError("boom")
        with pytest.raises(ValueError, match="boom"):
            d.groupByKey().map(fail).collect()
        assert _spill_dirs(spill_root) == []
        assert ctx.lastJobMetrics() is not None
    assert os.listdir(spill_root) == []


def test_concurrent_jobs_spill_to_their_own_files(spill_root):
    results: dict[int, list] = {}

    def job(n: int) -> None:
        with Context("local[2]", task_memory="1k") as ctx:
            data = [(i % 13, i * n) for i in range(8000)]
            results[n] = sorted(ctx.parallelize(data, 3).reduceByKey(add).collect())
            results[-n] = ctx.parallelize(data, 3).sortByKey().collect()

    threads = [threading.Thread(target=job, args=(n,)) for n in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for n in (1, 2, 3):
        data = [(i % 13, i * n) for i in range(8000)]
        expected: dict = {}
        for k, v in data:
            expected[k] = expected.get(k, 0) + v
        assert results[n] == sorted(expected.items())
        assert results[-n] == sorted(data, key=lambda kv: kv[0])
    assert _spill_dirs(spill_root) == []
    a, b = SpillDir(), SpillDir()
    assert a.new_path("x") != b.new_path("x") and os.path.dirname(a.new_path("y")) != os.path.dirname(b.new_path("y"))
    a.remove(), b.remove()


def test_a_dead_process_spill_directory_is_swept(spill_root):
    dead = os.path.join(spill_root, "okplan-spill-999999999-job-abc")
    os.makedirs(dead)
    d = SpillDir()
    write_run(d, [1, 2, 3])
    assert not os.path.exists(dead)
    d.remove()
    assert sweep_stale(spill_root) == 0 and os.listdir(spill_root) == []


def test_budget_settings():
    assert parse_size("256m") == 256 << 20 and parse_size("2g") == 2 << 30 and parse_size("512") == 512
    with pytest.raises(ConfigurationError, match="task_memory"):
        Context(task_memory="lots")
    with pytest.raises(ConfigurationError, match="256m"):
        parse_size("-1m")


# -- the cluster: spill dirs, killed workers, big blocks, a full Redis --------------------------------------

@pytest.fixture(scope="module")
def small_store_cluster(tmp_path_factory):
    """A cluster whose workers spill under a directory we watch, with 8 KB block chunks and a Redis of
    2 MB, so chunking and the spill tier are exercised by small data."""
    root = str(tmp_path_factory.mktemp("spill"))
    saved = {k: os.environ.get(k) for k in ("OKPLAN_LOCAL_DIR", "OKPLAN_BLOCK_CHUNK")}
    os.environ.update(OKPLAN_LOCAL_DIR=root, OKPLAN_BLOCK_CHUNK="8k")
    try:
        with cluster_context(2, task_memory="4k", redis_maxmemory="2m") as ctx:
            yield ctx, root
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_cluster_blocks_bigger_than_a_chunk_and_redis_go_through(small_store_cluster):
    ctx, root = small_store_cluster
    data = [(i % 50, "v" * 40 + str(i)) for i in range(60_000)]          # ~4 MB: twice Redis's maxmemory
    d = ctx.parallelize(data, 2)
    assert sorted(d.collect()) == sorted(data)                            # chunked sources and results
    grouped = dict(d.groupByKey(1).mapValues(len).collect())              # one bucket per map task
    assert grouped == {k: 1200 for k in range(50)}
    cached = d.map(lambda kv: kv).cache()
    assert cached.count() == 60_000 and sorted(cached.collect()) == sorted(data)
    cached.unpersist()
    info = ctx.executor.store.r.info("memory")
    assert info["used_memory"] < 4 * info["maxmemory"]
    assert _spill_dirs(root) == []
    store_dirs = [n for n in os.listdir(root) if n.startswith("okplan-store-")]
    assert all(os.listdir(os.path.join(root, n)) == [] for n in store_dirs)


def test_cluster_named_datasets_and_big_single_results_go_through_in_chunks(small_store_cluster):
    ctx, _ = small_store_cluster
    data = [(i, "n" * 30 + str(i)) for i in range(20_000)]                # ~1 MB: many 8 KB chunks
    ctx.parallelize(data, 2).save("spill-named")
    try:
        assert sorted(ctx.dataSet(label="spill-named", fromExisting=True).collect()) == data
    finally:
        ctx.executor.drop_named("spill-named")
    # one partition's value is one object (a 320 KB string, a dict), not a list of records: over the
    # inline limit (64 KB) and a chunk, it is stored in byte pieces
    words = [os.urandom(16).hex() for _ in range(10_000)]
    assert ctx.parallelize(words, 1).reduce(lambda a, b: a + b) == "".join(words)
    table = {w: i for i, w in enumerate(words)}
    assert ctx.parallelize([0], 1).map(lambda _: table).reduce(lambda a, b: a) == table


def test_cluster_spill_dirs_are_removed_after_failure_and_a_killed_worker(small_store_cluster, tmp_path):
    ctx, root = small_store_cluster
    d = ctx.parallelize([(i % 7, i) for i in range(4000)], 2)

    def fail(kv):
        raise KeyError("nope")
    with pytest.raises(KeyError):
        d.groupByKey().map(fail).collect()
    # the job failed as soon as one task did; the other may still be running, and cleans up when it ends
    assert wait_until(lambda: _spill_dirs(root) == [])

    marker = str(tmp_path / "killed")

    def kill_once(kv):
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), 9)  # dies mid-task, its spill files on disk
        return kv[0], len(kv[1])
    assert sorted(d.groupByKey(2).map(kill_once).collect()) == [(k, len(range(k, 4000, 7))) for k in range(7)]
    assert os.path.exists(marker)
    ctx.executor.add_worker()
    # the retried task's first spill swept the dead worker's directory
    assert wait_until(lambda: _spill_dirs(root) == [])


@pytest.mark.slow
def test_a_600_mb_partition_and_a_1_gb_bucket_on_the_cluster():
    with cluster_context(2, redis_maxmemory="512m") as ctx:
        big = ctx.range(0, 600, numSlices=1).flatMap(lambda i: [os.urandom(500_000).hex()[:1_000_000]])
        assert big.map(len).sum() == 600 * 1_000_000
        part = big.cache()
        assert part.count() == 600
        bucket = ctx.range(0, 1100, numSlices=2).map(lambda i: (0, "x" * 1_000_000)).groupByKey(1)
        assert bucket.mapValues(len).collect() == [(0, 1100)]


def test_cartesian_streams_its_right_partition_from_disk_past_the_budget(local_ctx):
    left = local_ctx.parallelize(range(30), 2)
    right = local_ctx.parallelize([("r", i) for i in range(3000)], 1)
    expected = left.cartesian(right).collect()
    with budget(local_ctx, "4k"):
        got = left.cartesian(right).collect()
        spilled = sum(s.spill_bytes for s in local_ctx.lastJobMetrics().stages.values())
    assert got == expected
    assert spilled > 0


def test_cluster_a_record_bigger_than_a_chunk_goes_in_pieces(small_store_cluster):
    """A single record over the chunk size (8 KB here; Redis's 512 MB limit for real) is stored as
    pieces of its pickled bytes, in every kind of block: sources, buckets, caches, results, named."""
    ctx, _ = small_store_cluster
    big = os.urandom(40_000)                                             # incompressible: 5 chunks' worth
    data = [(1, b"small"), (2, big), (1, big[:9_000]), (3, b"")]
    d = ctx.parallelize(data, 2)
    assert sorted(d.collect()) == sorted(data)                           # source upload and results
    grouped = dict(d.groupByKey(1).mapValues(sorted).collect())          # one bucket holds the big record
    assert grouped == {1: sorted([b"small", big[:9_000]]), 2: [big], 3: [b""]}
    cached = d.map(lambda kv: kv).cache()
    assert sorted(cached.collect()) == sorted(data) and cached.count() == 4
    r = ctx.executor.store.r
    values = [v for key in r.scan_iter(match="okplan:cache:*")
              for v in (r.hvals(key) if r.type(key) == b"hash" else [r.get(key)])]
    assert values and max(map(len, values)) <= 8 * 1024                   # no value over a chunk
    cached.unpersist()
    d.save("spill-big-record")
    try:
        assert sorted(ctx.dataSet(label="spill-big-record", fromExisting=True).collect()) == sorted(data)
    finally:
        ctx.executor.drop_named("spill-big-record")


def test_a_spilled_shuffle_output_is_kept_by_its_files(spill_root):
    """Shuffle reuse keeps a spilled map output as its spill files (linked into the executor's
    directory), not read back and pickled: a later job reads them, and they go with the context."""
    with Context("local", task_memory="256k") as ctx:
        seen = ctx.accumulator(0)

        def f(x):
            seen.add(1)
            return x % 1000, x

        groups = ctx.parallelize(range(40_000), 2).map(f).groupByKey()
        assert groups.count() == 1000
        assert sum(s.spill_bytes for s in ctx.lastJobMetrics().stages.values()) > 0
        kept = [b for _, rows in ctx.executor.kept.values() for row in rows for b in row]
        files = {r.path for b in kept if hasattr(b, "files") for r in b.records.runs}
        assert files and all(os.path.exists(p) for p in files)
        assert sorted(groups.mapValues(len).collect()) == [(k, 40) for k in range(1000)]
        assert seen.value == 40_000                                        # the map ran once
        ctx.executor.drop_kept_shuffle(next(iter(ctx.executor.kept)))
        del kept
        assert not any(os.path.exists(p) for p in files)
    assert os.listdir(spill_root) == []


def test_spilled_blocks_go_to_chunks_without_unpickling(tmp_path):
    """A spilled bucket's batches become block chunks as they are (sealed, never unpickled); a batch
    naming __main__ is encoded again, and a record bigger than a chunk is cut into pieces."""
    from okplan.exec.cluster.blocks import encode_chunks, joined
    from okplan.exec.serialization import decode_block, encode_block, seal
    from okplan.exec.spill import RunWriter, STREAM_BATCH

    d = SpillDir(root=str(tmp_path))
    records = [(i, "v" * (i % 7)) for i in range(5000)] + [(0, "__main__")] + [(1, os.urandom(20_000))]
    with RunWriter(d, "buckets") as w:
        runs = [w.write(records[:4000], STREAM_BATCH), w.write(records[4000:], STREAM_BATCH)]
    spilled = SpilledRecords(runs, [(2, "tail")])
    sealed = []

    def counting_seal(raw: bytes) -> bytes:
        sealed.append(len(raw))
        return seal(raw)
    blobs = list(encode_chunks(spilled, encode_block, 8 * 1024, seal=counting_seal))
    assert max(map(len, blobs)) <= 8 * 1024 and sealed
    assert [r for chunk in joined(decode_block(b) for b in blobs) for r in chunk] == records + [(2, "tail")]
    d.remove()


def test_a_spilled_pinned_output_is_kept_by_its_files_too(spill_root):
    """A map output that adaptive query stages pinned, spilled, is kept for later jobs by its files as
    well (not read back and pickled), beside the pinning job's own reference to it."""
    from okplan.exec.local import LocalExecutor, kept_bucket

    ex = LocalExecutor(task_memory="1m")
    job = SpillDir("job")
    spilled = SpilledRecords([write_run(job, [("a", 1), ("b", 2)])], [("c", 3)])
    ex.pin_shuffle("k")
    ex._keep("k", [[spilled, [("d", 4)]]])
    kept = ex.kept["k"][1]
    assert hasattr(kept[0][0], "files")
    job.remove()                                                         # the job's names go; links stay
    assert list(kept_bucket(kept[0][0], b"")) == [("a", 1), ("b", 2), ("c", 3)]
    ex.unpin_shuffle("k")
    ex.stop()
    assert os.listdir(spill_root) == []
