"""The rest of the RDD API (zip, tree aggregation, sampling, pipe, sketches, groupWith, checkpoints,
toLocalIterator, side files, log level): values and error types equal PySpark's (see ``api_cases``),
on every executor."""

from __future__ import annotations

import io
import os
import sys
import textwrap
from operator import add

import pytest
from api_cases import Raises, by_key, check

from okplan import Logger, SparkFiles

NUMS = [-5, -4, -3, -2, -1, 1, 2, 3, 4]
RASW = [(0, 5), (3, 8), (2, 6), (0, 8), (3, 8), (1, 3)]

CASES = {
    # zip
    "zip": (lambda sc: sc.parallelize(range(4), 2).zip(sc.parallelize(list("abcd"), 2)).collect(),
            [(0, "a"), (1, "b"), (2, "c"), (3, "d")]),
    "zip-after-map": (lambda sc: sc.parallelize(range(5), 2).zip(sc.parallelize(range(5), 2).map(lambda x: x * 2))
                      .collect(), [(0, 0), (1, 2), (2, 4), (3, 6), (4, 8)]),
    "zip-self": (lambda sc: (lambda r: r.zip(r).collect())(sc.parallelize(range(5), 2)),
                 [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)]),
    "zip-after-sort": (lambda sc: sc.parallelize([3, 1, 2], 2).sortBy(lambda x: x, numPartitions=1)
                       .zip(sc.parallelize(range(3), 1)).collect(), [(1, 0), (2, 1), (3, 2)]),
    "zip-empty": (lambda sc: sc.emptyRDD().zip(sc.emptyRDD()).collect(), []),
    "zip-partitions-differ": (lambda sc: sc.parallelize(range(4), 2).zip(sc.parallelize(range(4), 3)),
                              Raises(ValueError)),
    "zip-records-differ": (lambda sc: sc.parallelize(range(4), 2).zip(sc.parallelize(range(5), 2)).collect(),
                           Raises(ValueError)),
    # tree aggregation
    "treeAggregate": (lambda sc: [sc.parallelize(NUMS, 10).treeAggregate(0, add, add, d) for d in (1, 2, 5, 10)],
                      [-5, -5, -5, -5]),
    "treeAggregate-zero-per-partition": (lambda sc: sc.parallelize(range(10), 5).treeAggregate(100, add, add), 545),
    "treeAggregate-zero-10-parts": (lambda sc: sc.parallelize(range(10), 10).treeAggregate(1, add, add, 2), 55),
    "treeAggregate-order": (lambda sc: sc.parallelize(range(10), 7).treeAggregate(
        [], lambda a, b: a + [b], lambda a, b: a + b, 2), [0, 2, 3, 5, 6, 8, 9, 1, 4, 7]),
    "treeAggregate-empty": (lambda sc: sc.parallelize([], 2).treeAggregate(0, add, add), 0),
    "treeAggregate-depth-0": (lambda sc: sc.parallelize([1], 2).treeAggregate(0, add, add, 0), Raises(ValueError)),
    "treeReduce": (lambda sc: [sc.parallelize(NUMS, 10).treeReduce(add, d) for d in (1, 2, 5, 10)], [-5] * 4),
    "treeReduce-empty": (lambda sc: sc.parallelize([], 2).treeReduce(add), Raises(ValueError)),
    "treeReduce-depth-0": (lambda sc: sc.parallelize(range(4), 2).treeReduce(add, 0), Raises(ValueError)),
    # sampling
    "takeSample-with-replacement-size": (lambda sc: len(sc.parallelize(range(10), 2).takeSample(True, 20, 1)), 20),
    "takeSample-exact-size": (lambda sc: len(sc.parallelize(range(100), 3).takeSample(False, 37, 5)), 37),
    "takeSample-more-than-count": (lambda sc: sorted(sc.parallelize(range(10), 2).takeSample(False, 20, 1)),
                                   list(range(10))),
    "takeSample-distinct-records": (lambda sc: len(set(sc.parallelize(range(50), 3).takeSample(False, 20, 2))), 20),
    "takeSample-empty": (lambda sc: sc.parallelize([], 2).takeSample(True, 20, 1), []),
    "takeSample-zero": (lambda sc: sc.parallelize(range(5), 2).takeSample(True, 0, 1), []),
    "takeSample-negative": (lambda sc: sc.parallelize(range(10), 2).takeSample(False, -1), Raises(ValueError)),
    "randomSplit": (lambda sc: [sorted(r.collect()) for r in sc.parallelize(range(20), 2).randomSplit([1, 1], 3)],
                    [[1, 3, 5, 15], [0, 2, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19]]),
    "randomSplit-covers-all": (lambda sc: sorted(x for r in sc.parallelize(range(500), 3).randomSplit([2, 3, 5], 17)
                                                 for x in r.collect()), list(range(500))),
    "randomSplit-negative": (lambda sc: sc.parallelize(range(10), 2).randomSplit([1, -1]), Raises(ValueError)),
    "randomSplit-zero-sum": (lambda sc: sc.parallelize(range(10), 2).randomSplit([0, 0]), Raises(ValueError)),
    "sampleByKey-keys": (lambda sc: sorted({k for k, _ in sc.parallelize([(i % 3, i) for i in range(300)], 3)
                                            .sampleByKey(False, {0: 0.5, 1: 0.1, 2: 0.0}, 2).collect()}), [0, 1]),
    "sampleByKey-missing-fraction": (lambda sc: sc.parallelize([(i % 3, i) for i in range(30)], 3)
                                     .sampleByKey(False, {0: 0.5}, 2).collect(), Raises(Exception)),
    # pipe
    "pipe": (lambda sc: sc.parallelize(["1", "2", "", "3"]).pipe("cat").collect(), ["1", "2", "", "3"]),
    "pipe-str-of-records": (lambda sc: sc.parallelize([1, 2, "a\n"], 2).pipe("cat").collect(), ["1", "2", "a"]),
    "pipe-exit-code-ignored": (lambda sc: sc.parallelize(["1"], 1).pipe("false").collect(), []),
    "pipe-exit-code-checked": (lambda sc: sc.parallelize(["1"], 1).pipe("false", checkCode=True).collect(),
                               Raises(Exception)),
    "pipe-env": (lambda sc: sc.parallelize(["1"], 1).pipe('sh -c "echo $FOO"', env={"FOO": "x"}).collect(), ["x"]),
    "pipe-missing-command": (lambda sc: sc.parallelize(["1"], 1).pipe("okplan-no-such-command").collect(),
                             Raises(Exception)),
    # approximate
    "countApproxDistinct": (lambda sc: 900 < sc.parallelize(range(1000)).map(str).countApproxDistinct() < 1100, True),
    "countApproxDistinct-small": (lambda sc: 16 < sc.parallelize([i % 20 for i in range(1000)]).countApproxDistinct()
                                  < 24, True),
    "countApproxDistinct-empty": (lambda sc: sc.parallelize([], 2).countApproxDistinct(), 0),
    "countApproxDistinct-bad-sd": (lambda sc: sc.parallelize(range(10), 2).countApproxDistinct(0.00001),
                                   Raises(ValueError)),
    "countApprox": (lambda sc: sc.parallelize(range(1000), 10).countApprox(1000, 1.0), 1000),
    "sumApprox": (lambda sc: (lambda r: (float(r), r.confidence, r.low, r.high))(
        sc.parallelize(range(1000), 10).sumApprox(1000, 1.0)), (499500.0, 1.0, 499500.0, 499500.0)),
    "meanApprox": (lambda sc: float(sc.parallelize(range(1000), 10).meanApprox(1000)), 499.5),
    # by key
    "groupWith-many": (lambda sc: sorted((k, tuple(map(list, v))) for k, v in sc.parallelize([("a", 5), ("b", 6)])
                                         .groupWith(sc.parallelize([("a", 1), ("b", 4)]), sc.parallelize([("a", 2)]),
                                                    sc.parallelize([("b", 42)])).collect()),
                       [("a", ([5], [1], [2], [])), ("b", ([6], [4], [], [42]))]),
    "groupWith-one": (lambda sc: by_key((k, tuple(map(list, v))) for k, v in sc.parallelize([("a", 1), ("b", 4)])
                                        .groupWith(sc.parallelize([("a", 2)])).collect()),
                      [("a", ([1], [2])), ("b", ([4], []))]),
    "groupWith-partitions": (lambda sc: sc.parallelize([("a", 5)], 3).groupWith(
        sc.parallelize([("a", 1)], 2), sc.parallelize([("a", 2)], 4)).getNumPartitions(), 9),
    "repartitionAndSortWithinPartitions": (
        lambda sc: sc.parallelize(RASW).repartitionAndSortWithinPartitions(2, lambda x: x % 2, True).glom().collect(),
        [[(0, 5), (0, 8), (2, 6)], [(1, 3), (3, 8), (3, 8)]]),
    "repartitionAndSortWithinPartitions-desc": (
        lambda sc: sc.parallelize(RASW, 3).repartitionAndSortWithinPartitions(2, lambda x: x % 2, False).glom()
        .collect(), [[(2, 6), (0, 5), (0, 8)], [(3, 8), (3, 8), (1, 3)]]),
    "repartitionAndSortWithinPartitions-default-partitions": (
        lambda sc: sc.parallelize(RASW[:3], 3).repartitionAndSortWithinPartitions().getNumPartitions(), 3),
    "lookup-sorted": (lambda sc: sc.parallelize([(i, i) for i in range(100)], 4).sortByKey().lookup(42), [42]),
    "lookup-sorted-missing": (lambda sc: sc.parallelize([(i, i) for i in range(100)], 4).sortByKey().lookup(1024), []),
    "reduceByKeyLocally": (lambda sc: sc.parallelize([("a", 1), ("b", 2), ("a", 3)], 2).reduceByKeyLocally(add),
                           {"a": 4, "b": 2}),
    # narrow and iteration
    "mapPartitionsWithSplit": (lambda sc: sc.parallelize(range(4), 2).mapPartitionsWithSplit(lambda i, it: [i])
                               .collect(), [0, 1]),
    "mapPartitions-returns-None": (lambda sc: sc.parallelize(range(4), 2).mapPartitions(lambda it: None).collect(),
                                   Raises(Exception)),
    "mapPartitionsWithIndex-returns-None": (
        lambda sc: sc.parallelize(range(4), 2).mapPartitionsWithIndex(lambda i, it: None).collect(), Raises(Exception)),
    "toLocalIterator": (lambda sc: list(sc.parallelize(range(10), 3).toLocalIterator()), list(range(10))),
    "toLocalIterator-prefetch": (lambda sc: list(sc.parallelize(range(10), 3).toLocalIterator(True)), list(range(10))),
    "toLocalIterator-empty": (lambda sc: list(sc.emptyRDD().toLocalIterator()), []),
    "toLocalIterator-after-shuffle": (lambda sc: sorted(sc.parallelize(range(10), 3).map(lambda x: (x % 4, x))
                                                        .reduceByKey(add).toLocalIterator()),
                                      [(0, 12), (1, 15), (2, 8), (3, 10)]),
    "localCheckpoint": (lambda sc: (lambda r: (r.localCheckpoint(), r.isLocallyCheckpointed(), r.count()))(
        sc.parallelize(range(4), 2)), (None, True, 4)),
    "setLogLevel-lower-case": (lambda sc: sc.setLogLevel("info"), None),
}

#: okplan answers these exactly; PySpark's answer depends on how many tasks finished within the timeout
OKPLAN_ONLY = {"sumApprox", "meanApprox"}

# Errors that PySpark raises from its JVM (a Py4JJavaError around the worker's traceback) are
# ``Raises(Exception)`` here; the tests below pin okplan's own types and messages.


@pytest.mark.parametrize("name", CASES)
def test_case(ctx, name):
    check(CASES, name, ctx)


# -- errors and their messages -------------------------------------------------------------------------

def test_mapPartitions_returning_None_raises_pysparks_TypeError(ctx):
    with pytest.raises(TypeError, match="'NoneType' object is not iterable") as info:
        ctx.parallelize(range(4), 2).mapPartitions(lambda it: None).collect()
    assert any("must return an iterable" in n for n in info.value.__notes__)


def test_zip_errors_say_what_differs(ctx):
    with pytest.raises(ValueError, match="same number of partitions"):
        ctx.parallelize(range(4), 2).zip(ctx.parallelize(range(4), 3))
    with pytest.raises(ValueError, match="same number of elements in each partition"):
        ctx.parallelize(range(4), 2).zip(ctx.parallelize(range(5), 2)).collect()


def test_pipe_failure_with_checkCode_quotes_the_command_and_stderr(ctx):
    with pytest.raises(RuntimeError, match=r"Pipe function `sh -c .*` exited with error code 3(.|\n)*oops"):
        ctx.parallelize(["1"], 1).pipe('sh -c "cat >/dev/null; echo oops >&2; exit 3"', checkCode=True).collect()


def test_pipe_reports_an_upstream_error_not_a_broken_pipe(ctx):
    with pytest.raises(ZeroDivisionError):
        ctx.parallelize([1, 0], 1).map(lambda x: 1 / x).pipe("cat").collect()


def test_pipe_command_that_stops_reading_early(ctx):
    assert ctx.parallelize(range(100_000), 2).pipe("head -n 2").collect() == ["0", "1", "50000", "50001"]


def test_pipe_stopped_early_by_take_kills_the_command(ctx):
    # more output than a pipe buffers: the command blocks writing once take() stops reading
    assert ctx.parallelize(range(300_000), 1).pipe("cat").take(2) == ["0", "1"]


def test_takeSample_without_replacement_returns_all_shuffled(ctx):
    data = ctx.parallelize(range(30), 3)
    first = data.takeSample(False, 100, seed=7)
    assert sorted(first) == list(range(30)) and first != list(range(30))
    assert data.takeSample(False, 100, seed=7) == first


def test_takeSample_is_exact_and_reproducible(ctx):
    data = ctx.parallelize(range(1000), 4)
    for num in (1, 10, 999):
        assert len(data.takeSample(False, num, seed=3)) == num
    assert data.takeSample(True, 50, seed=3) == data.takeSample(True, 50, seed=3)


def test_countApproxDistinct_within_relative_accuracy(ctx):
    n = 20_000
    for sd in (0.05, 0.01):
        estimate = ctx.parallelize(range(n), 4).countApproxDistinct(sd)
        assert abs(estimate - n) / n < 4 * sd, (sd, estimate)
    # equal records count once whatever their type, as in distinct()
    assert ctx.parallelize([1, 1.0, True, "1", (1, 2), (1, 2)], 2).countApproxDistinct() == 3


def test_lookup_on_partitioned_data_reads_one_partition(ctx):
    pairs = ctx.parallelize([(i % 7, i) for i in range(70)], 3).partitionBy(4).cache()
    try:
        pairs.count()
        assert pairs.lookup(3) == [i for i in range(70) if i % 7 == 3]
        stages = ctx.lastJobMetrics().stages
        assert sum(s.tasks for s in stages.values()) == 1  # no shuffle again, one of four partitions read
        keyed = ctx.parallelize(range(40), 4).keyBy(lambda x: x % 5).partitionBy(5)
        assert sorted(keyed.lookup(2)) == [x for x in range(40) if x % 5 == 2]
        result = [s for s in ctx.lastJobMetrics().stages.values() if s.kind == "result"]
        assert [s.tasks for s in result] == [1]
    finally:
        pairs.unpersist()


def test_toLocalIterator_runs_one_partition_per_job(ctx):
    data = ctx.parallelize(range(12), 4).map(lambda x: x * 2)
    it = data.toLocalIterator()
    assert [next(it) for _ in range(3)] == [0, 2, 4]
    assert sum(s.tasks for s in ctx.lastJobMetrics().stages.values()) == 1
    assert list(it) == [x * 2 for x in range(3, 12)]


def test_toLocalIterator_after_a_shuffle_shuffles_once_and_cleans_up(ctx):
    calls = ctx.accumulator(0)
    data = ctx.parallelize(range(20), 4).map(lambda x: (calls.add(1), (x % 5, x))[1]).reduceByKey(add, 5)
    assert sorted(data.toLocalIterator()) == sorted(data.collect())
    # 20 records for the iterator (once, not once per partition); collect reuses that shuffle (as Spark)
    # where the executor keeps shuffles, else runs the map again
    assert calls.value == (20 if ctx.session.reuse.enabled else 40)
    it = data.toLocalIterator()
    next(it)
    it.close()
    assert not [c for c in getattr(ctx.executor, "cache", getattr(ctx.executor, "_caches", {})) if c.startswith("iter-")]


def test_checkpoint_needs_a_directory_then_cuts_the_lineage(ctx, tmp_path):
    data = ctx.parallelize(range(6), 2).map(lambda x: x + 1).filter(lambda x: x % 2)
    saved = ctx._checkpoint_dir
    ctx._checkpoint_dir = None
    try:
        with pytest.raises(ValueError, match="setCheckpointDir"):
            data.checkpoint()
        ctx.setCheckpointDir(str(tmp_path))
        assert ctx.getCheckpointDir().startswith(str(tmp_path))
        data.checkpoint()
        assert data.is_checkpointed and not data.isCheckpointed() and data.getCheckpointFile() is None
        assert data.collect() == [1, 3, 5]
        assert data.isCheckpointed()
        logical = data.toDebugString("logical")
        assert "CachedRead [checkpoint-" in logical and "Map" not in logical
        assert data.map(lambda x: x * 10).collect() == [10, 30, 50]
    finally:
        data.unpersist()
        ctx._checkpoint_dir = saved


def test_setLogLevel_sets_the_threshold_of_okplan_loggers(ctx):
    out = io.StringIO()
    log = Logger("t", stream=out)
    try:
        ctx.setLogLevel("ERROR")
        log.warn("hidden")
        log.error("shown")
        ctx.setLogLevel("OFF")
        log.fatal("hidden too")
        ctx.setLogLevel("ALL")
        log.trace("all")
        with pytest.raises(ValueError, match="did not match one of"):
            ctx.setLogLevel("NOPE")
    finally:
        import logging

        import okplan.logger as logger_module

        logger_module._threshold = None
        logging.getLogger("okplan").setLevel(logging.NOTSET)  # setLogLevel set the engine loggers' too
    lines = out.getvalue()
    assert "shown" in lines and "all" in lines and "hidden" not in lines


# -- side files ----------------------------------------------------------------------------------------

def test_addPyFile_and_addFile_reach_every_task(ctx, tmp_path):
    module = f"okplan_side_mod_{ctx.executor.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent("""
        def triple(x):
            return 3 * x
    """))
    (tmp_path / "side-table.txt").write_text("hello side\n")
    ctx.addPyFile(str(tmp_path / f"{module}.py"))
    ctx.addFile(str(tmp_path / "side-table.txt"))
    # the content was taken when added: tasks never read the client's path
    (tmp_path / f"{module}.py").unlink()
    (tmp_path / "side-table.txt").unlink()
    try:
        assert ctx.parallelize(range(4), 2).map(lambda x: __import__(module).triple(x)).collect() == [0, 3, 6, 9]
        # a function of the shipped module, pickled by reference, unpickles on the workers
        shipped = __import__(module)
        assert ctx.parallelize(range(4), 2).map(shipped.triple).collect() == [0, 3, 6, 9]
        contents = ctx.parallelize(range(4), 4).map(lambda _: open(SparkFiles.get("side-table.txt")).read()).collect()
        assert contents == ["hello side\n"] * 4
        assert open(SparkFiles.get("side-table.txt")).read() == "hello side\n"  # the client has them too
    finally:
        sys.modules.pop(module, None)


def test_addFile_errors(ctx, tmp_path):
    with pytest.raises(FileNotFoundError):
        ctx.addFile(str(tmp_path / "nope.txt"))
    with pytest.raises(ValueError, match="directory"):
        ctx.addFile(str(tmp_path))
    with pytest.raises(ValueError):
        SparkFiles.get("../etc/passwd")


def test_side_files_reach_hand_started_workers_through_redis(tmp_path):
    """``tcp://``: workers started by hand, in another directory, get the bytes from Redis; the keys go
    at ``stop()``."""
    from cluster_helpers import redis_server
    from test_cluster_cli import _connect, hand_made_cluster

    (tmp_path / "okplan_tcp_side_mod.py").write_text("def name():\n    return 'shipped'\n")
    (tmp_path / "notes.txt").write_text("side\n")
    with redis_server() as redis_url, hand_made_cluster(redis_url, workers=2) as url:
        ctx = _connect(url)
        try:
            ctx.addPyFile(str(tmp_path / "okplan_tcp_side_mod.py"))
            ctx.addFile(str(tmp_path / "notes.txt"))
            for f in tmp_path.iterdir():
                f.unlink()
            got = ctx.parallelize(range(4), 4).map(
                lambda _: (__import__("okplan_tcp_side_mod").name(), open(SparkFiles.get("notes.txt")).read(),
                           os.getpid())).collect()
            assert {g[:2] for g in got} == {("shipped", "side\n")}
            store = ctx.executor.store
        finally:
            ctx.stop()
            sys.modules.pop("okplan_tcp_side_mod", None)
        assert not store.r.keys("okplan:files:*")
