"""``Context``: creating datasets, shared variables, runJob and the lifecycle."""

from __future__ import annotations

import pytest
from api_cases import check

from okplan import ChainableList, Context, DataSet


def accumulate(sc, initial, add_each, data):
    acc = sc.accumulator(initial)
    sc.parallelize(data, 3).foreach(lambda x: acc.add(add_each(x)))
    return acc.value


def broadcast_lookup(sc):
    table = sc.broadcast({"a": 1, "b": 2})
    return (table.value, sc.parallelize(["a", "b", "a"], 2).map(lambda k: table.value[k]).collect())


CASES = {
    "parallelize-list": (lambda sc: sc.parallelize([1, "a", None, (2,)], 2).collect(), [1, "a", None, (2,)]),
    "parallelize-generator": (lambda sc: sc.parallelize((x * x for x in range(4)), 2).glom().collect(),
                              [[0, 1], [4, 9]]),
    "parallelize-tuple": (lambda sc: sc.parallelize((3, 2, 1), 1).collect(), [3, 2, 1]),
    "parallelize-range-glom": (lambda sc: sc.parallelize(range(1, 12, 2), 4).glom().collect(),
                               [[1], [3, 5], [7], [9, 11]]),
    "parallelize-empty-range": (lambda sc: sc.parallelize(range(0), 2).glom().collect(), [[], []]),
    "parallelize-numSlices": (lambda sc: sc.parallelize(range(3), 7).getNumPartitions(), 7),
    "range": (lambda sc: sc.range(5).collect(), [0, 1, 2, 3, 4]),
    "range-start-end": (lambda sc: sc.range(2, 6).collect(), [2, 3, 4, 5]),
    "range-step": (lambda sc: sc.range(1, 10, 3).collect(), [1, 4, 7]),
    "range-negative-step": (lambda sc: sc.range(10, 0, -3, 2).glom().collect(), [[10, 7], [4, 1]]),
    "range-numSlices-glom": (lambda sc: sc.range(0, 10, 1, 3).glom().collect(), [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]),
    "range-empty": (lambda sc: sc.range(5, 5, 1, 2).collect(), []),
    "range-sum": (lambda sc: sc.range(0, 1000, 7, 4).sum(), sum(range(0, 1000, 7))),
    "emptyRDD": (lambda sc: (sc.emptyRDD().getNumPartitions(), sc.emptyRDD().collect()), (0, [])),
    "emptyRDD-map-count": (lambda sc: sc.emptyRDD().map(lambda x: x).count(), 0),
    "union-list": (lambda sc: sc.union([sc.parallelize([1], 1), sc.parallelize([2, 3], 2), sc.parallelize([4])])
                   .collect(), [1, 2, 3, 4]),
    "union-one": (lambda sc: sc.union([sc.parallelize([1, 2], 2)]).collect(), [1, 2]),
    "union-numPartitions": (lambda sc: sc.union([sc.parallelize([1], 2), sc.parallelize([2], 3)]).getNumPartitions(),
                            5),
    "union-with-empty": (lambda sc: sc.union([sc.emptyRDD(), sc.parallelize([1], 1)]).collect(), [1]),
    "broadcast": (broadcast_lookup, ({"a": 1, "b": 2}, [1, 2, 1])),
    "accumulator-int": (lambda sc: accumulate(sc, 0, lambda x: x, range(10)), 45),
    "accumulator-float": (lambda sc: accumulate(sc, 0.5, lambda x: x / 2, range(4)), 3.5),
    "accumulator-start": (lambda sc: accumulate(sc, 100, lambda x: 1, range(5)), 105),
    "runJob": (lambda sc: sc.runJob(sc.parallelize(range(6), 3), lambda it: [sum(it)]), [1, 5, 9]),
    "runJob-partitions": (lambda sc: sc.runJob(sc.parallelize(range(6), 3), lambda it: [sum(it)], [0, 2]), [1, 9]),
    "runJob-flattens": (lambda sc: sc.runJob(sc.parallelize(range(4), 2), lambda it: [x * 10 for x in it], [1]),
                        [20, 30]),
    "runJob-no-partitions": (lambda sc: sc.runJob(sc.parallelize(range(4), 2), lambda it: [1], []), []),
    "runJob-after-shuffle": (lambda sc: sorted(sc.runJob(sc.parallelize([(1, 1), (1, 2), (2, 3)], 2)
                                                         .reduceByKey(lambda a, b: a + b, 2), list)),
                             [(1, 3), (2, 3)]),
}


@pytest.mark.parametrize("name", CASES)
def test_context(ctx, name):
    check(CASES, name, ctx)


def test_parallelize_default_numSlices_is_defaultParallelism(ctx):
    assert isinstance(ctx.defaultParallelism, int) and ctx.defaultParallelism >= 1
    assert ctx.parallelize(range(100)).getNumPartitions() == ctx.defaultParallelism
    assert ctx.range(100).getNumPartitions() == ctx.defaultParallelism


@pytest.mark.parametrize("master, parallelism", [("local[3]", 3), ("local[1]", 1)])
def test_local_n_sets_defaultParallelism(master, parallelism):
    with Context(master) as c:
        assert c.defaultParallelism == parallelism
        assert c.parallelize(range(10)).glom().map(len).collect() == [
            len(range(i * 10 // parallelism, (i + 1) * 10 // parallelism)) for i in range(parallelism)]


@pytest.mark.parametrize("data, bufferSize, partitions", [
    (list(range(1, 30)), 1, 29), (list(range(10)), 4, 3), (list(range(10)), None, 1), ([], 5, 1),
])
def test_dataSet_bufferSize_is_records_per_partition(ctx, data, bufferSize, partitions):
    ds = ctx.dataSet(ChainableList(data), label=f"buffer-{bufferSize}-{len(data)}", bufferSize=bufferSize)
    assert isinstance(ds, DataSet)
    assert ds.getNumPartitions() == partitions
    assert ds.collect() == data
    assert all(len(p) <= (bufferSize or 10240) for p in ds.glom().collect())
    assert ctx.dropDataSet(f"buffer-{bufferSize}-{len(data)}")


def test_dataSet_label_names_the_dataset_and_reopens_it(ctx):
    ds = ctx.dataSet([("a", 1), ("b", 2)], label="test-context-pairs", bufferSize=1)
    assert ds.name() == "test-context-pairs"
    assert "test-context-pairs" in ds.toDebugString()
    again = ctx.dataSet(label="test-context-pairs", fromExisting=True)
    assert again.collect() == [("a", 1), ("b", 2)] and again.getNumPartitions() == 2
    assert "test-context-pairs" in ctx.listDataSets()
    assert ctx.dropDataSet("test-context-pairs") and "test-context-pairs" not in ctx.listDataSets()
    with pytest.raises(KeyError, match="test-context-pairs"):
        ctx.dataSet(label="test-context-pairs", fromExisting=True)


def test_dataSet_without_label_or_data(ctx):
    assert ctx.dataSet(range(3)).collect() == [0, 1, 2]
    with pytest.raises(ValueError):
        ctx.dataSet()
    with pytest.raises(ValueError):
        ctx.dataSet(fromExisting=True)


def test_context_manager_stops():
    with Context() as c:
        ds = c.parallelize([1, 2, 3])
        assert ds.sum() == 6
    with pytest.raises(RuntimeError, match="stopped"):
        ds.collect()


def test_stop_is_idempotent_and_ends_jobs():
    c = Context("local[2]")
    ds = c.parallelize(range(4)).cache()
    assert ds.count() == 4
    c.stop()
    c.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        ds.sum()


def test_two_contexts_are_independent():
    with Context("local[2]") as a, Context("local[3]") as b:
        da, db = a.parallelize([1, 2]), b.parallelize([3])
        assert (da.collect(), db.collect()) == ([1, 2], [3])
        with pytest.raises(ValueError, match="two different Contexts"):
            da.union(db)
        with pytest.raises(ValueError, match="two different Contexts"):
            da.join(db.map(lambda x: (x, x)))


def test_broadcast_value_and_destroy(ctx):
    b = ctx.broadcast([1, 2, 3])
    assert b.value == [1, 2, 3]
    assert ctx.parallelize([0, 2], 2).map(lambda i: b.value[i]).collect() == [1, 3]
    b.unpersist()
    assert b.value == [1, 2, 3]
    b.destroy()
    with pytest.raises(RuntimeError):
        _ = b.value


def test_accumulator_in_place_and_across_actions(ctx):
    acc = ctx.accumulator(0)
    acc += 5
    acc.add(1)
    ds = ctx.parallelize(range(4), 2)
    ds.foreach(lambda x: acc.add(1))
    ds.foreach(lambda x: acc.add(1))
    assert acc.value == 14


def test_accumulator_with_accum_param(ctx):
    class ListParam:
        def zero(self, value):
            return []

        def addInPlace(self, a, b):
            return a + b

    acc = ctx.accumulator([], ListParam())
    ctx.parallelize(range(4), 2).foreach(lambda x: acc.add([x]))
    assert sorted(acc.value) == [0, 1, 2, 3]
