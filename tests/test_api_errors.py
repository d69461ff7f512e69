"""Errors: wrong arguments fail at the call; bad keys and records fail with a message that says what to
do; an exception in a user function reaches the caller with its own type, message and traceback, plus a
note naming the stage, partition and dataset."""

from __future__ import annotations

import traceback
from operator import add

import pytest
from api_cases import Raises, check

from okplan import Context, NotAPairError, NotHashableKeyError

CASES = {
    "reduce-empty": (lambda sc: sc.parallelize([], 3).reduce(add), Raises(ValueError)),
    "first-empty": (lambda sc: sc.emptyRDD().first(), Raises(ValueError)),
    "max-empty": (lambda sc: sc.parallelize([], 2).filter(bool).max(), Raises(ValueError)),
    "min-empty-key": (lambda sc: sc.parallelize([], 2).min(key=abs), Raises(ValueError)),
    "take-zero": (lambda sc: sc.parallelize([1], 1).take(0), []),
    "takeOrdered-negative": (lambda sc: sc.parallelize([1], 1).takeOrdered(-1), Raises(ValueError)),
    "user-error-type": (lambda sc: sc.parallelize([1, 0], 2).map(lambda x: 1 // x).collect(),
                        Raises(ZeroDivisionError)),
}
#: PySpark wraps errors of user functions in its own exception types
OKPLAN_ONLY = {"user-error-type", "takeOrdered-negative"}


@pytest.mark.parametrize("name", CASES)
def test_error_cases(ctx, name):
    check(CASES, name, ctx)


# -- wrong arguments: TypeError / ValueError at the call, before any job -----------------------------------
def _ds(c):
    return c.parallelize([(1, 2)], 1)


WRONG_ARGUMENTS = [
    ("map-not-callable", lambda c: _ds(c).map(5), TypeError, "map"),
    ("filter-none", lambda c: _ds(c).filter(None), TypeError, "filter"),
    ("flatMap", lambda c: _ds(c).flatMap("split"), TypeError, "flatMap"),
    ("mapPartitions", lambda c: _ds(c).mapPartitions(1), TypeError, "mapPartitions"),
    ("mapValues", lambda c: _ds(c).mapValues([]), TypeError, "mapValues"),
    ("keyBy", lambda c: _ds(c).keyBy(0), TypeError, "keyBy"),
    ("reduce", lambda c: _ds(c).reduce("add"), TypeError, "reduce"),
    ("fold", lambda c: _ds(c).fold(0, 0), TypeError, "fold"),
    ("aggregate", lambda c: _ds(c).aggregate(0, 1, add), TypeError, "aggregate"),
    ("foreach", lambda c: _ds(c).foreach(1), TypeError, "foreach"),
    ("reduceByKey-func", lambda c: _ds(c).reduceByKey(None), TypeError, "reduceByKey"),
    ("reduceByKey-numPartitions", lambda c: _ds(c).reduceByKey(add, "2"), TypeError, "numPartitions"),
    ("reduceByKey-numPartitions-zero", lambda c: _ds(c).reduceByKey(add, 0), ValueError, "numPartitions"),
    ("combineByKey", lambda c: _ds(c).combineByKey(1, add, add), TypeError, "createCombiner"),
    ("groupByKey-float", lambda c: _ds(c).groupByKey(2.0), TypeError, "numPartitions"),
    ("groupBy", lambda c: _ds(c).groupBy("k"), TypeError, "groupBy"),
    ("partitionBy", lambda c: _ds(c).partitionBy("2"), TypeError, "partitionBy"),
    ("partitionBy-func", lambda c: _ds(c).partitionBy(2, "hash"), TypeError, "partitionFunc"),
    ("distinct", lambda c: _ds(c).distinct("2"), TypeError, "distinct"),
    ("sortBy", lambda c: _ds(c).sortBy(5), TypeError, "sortBy"),
    ("sortByKey-numPartitions", lambda c: _ds(c).sortByKey(True, -1), ValueError, "numPartitions"),
    ("repartition-zero", lambda c: _ds(c).repartition(0), ValueError, "repartition"),
    ("coalesce-none", lambda c: _ds(c).coalesce(None), TypeError, "coalesce"),
    ("take-str", lambda c: _ds(c).take("3"), TypeError, "take"),
    ("top-float", lambda c: _ds(c).top(1.5), TypeError, "top"),
    ("union-list", lambda c: _ds(c).union([1]), TypeError, "union"),
    ("join-list", lambda c: _ds(c).join([(1, 2)]), TypeError, "DataSet"),
    ("cartesian", lambda c: _ds(c).cartesian(None), TypeError, "cartesian"),
    ("subtract", lambda c: _ds(c).subtract({1}), TypeError, "subtract"),
    ("histogram", lambda c: _ds(c).histogram("3"), TypeError, "buckets"),
    ("setName", lambda c: _ds(c).setName(1), TypeError, "setName"),
    ("sample-fraction", lambda c: _ds(c).sample(False, "0.1"), TypeError, "fraction"),
    ("parallelize-int", lambda c: c.parallelize(5), TypeError, "iterable"),
    ("parallelize-str", lambda c: c.parallelize("abc"), TypeError, "iterable"),
    ("parallelize-numSlices", lambda c: c.parallelize([1], "2"), TypeError, "numSlices"),
    ("parallelize-numSlices-zero", lambda c: c.parallelize([1], 0), ValueError, "numSlices"),
    ("range-str", lambda c: c.range("5"), TypeError, "range"),
    ("range-step-zero", lambda c: c.range(0, 5, 0), ValueError, "step"),
    ("union-of-non-datasets", lambda c: c.union([_ds(c), 5]), TypeError, "union"),
    ("union-empty-list", lambda c: c.union([]), ValueError, "union"),
    ("runJob-func", lambda c: c.runJob(_ds(c), 5), TypeError, "partitionFunc"),
    ("runJob-partition", lambda c: c.runJob(_ds(c), list, [3]), ValueError, "partition 3"),
    ("dataSet-bufferSize", lambda c: c.dataSet([1], bufferSize=0), ValueError, "bufferSize"),
]


@pytest.mark.parametrize("build, error, words", [pytest.param(*row[1:], id=row[0]) for row in WRONG_ARGUMENTS])
def test_wrong_argument_fails_at_the_call(ctx, build, error, words):
    with pytest.raises(error, match=words):
        build(ctx)


def test_context_needs_a_master_string():
    with pytest.raises(TypeError, match="master"):
        Context(5)


# -- keys that cannot be hashed, records that are not pairs ------------------------------------------------
LIST_KEYS = [([1], "a"), ([1], "b"), ([2], "c")]

UNHASHABLE = {
    "reduceByKey": lambda c: c.parallelize(LIST_KEYS, 2).reduceByKey(add),
    "reduceByKey-one-partition": lambda c: c.parallelize(LIST_KEYS, 1).reduceByKey(add, 1),
    "foldByKey": lambda c: c.parallelize(LIST_KEYS, 2).foldByKey("", add),
    "aggregateByKey": lambda c: c.parallelize(LIST_KEYS, 2).aggregateByKey("", add, add),
    "combineByKey": lambda c: c.parallelize(LIST_KEYS, 2).combineByKey(str, add, add),
    "groupByKey": lambda c: c.parallelize(LIST_KEYS, 2).groupByKey(),
    "groupBy": lambda c: c.parallelize(range(3), 2).groupBy(lambda x: [x]),
    "partitionBy": lambda c: c.parallelize(LIST_KEYS, 2).partitionBy(3),
    "join": lambda c: c.parallelize(LIST_KEYS, 2).join(c.parallelize([(1, 1)], 1)),
    "cogroup": lambda c: c.parallelize([(1, 1)], 1).cogroup(c.parallelize([({1}, 1)], 2)),
    "distinct": lambda c: c.parallelize([[1], [1]], 2).distinct(),
    "intersection": lambda c: c.parallelize([[1]], 2).intersection(c.parallelize([[1]], 1)),
    "subtract": lambda c: c.parallelize([{}], 2).subtract(c.parallelize([1], 1)),
    "tuple-holding-a-list": lambda c: c.parallelize([((1, [2]), 1)], 2).reduceByKey(add, 3),
}


@pytest.mark.parametrize("name", UNHASHABLE)
def test_unhashable_key_says_what_to_do(ctx, name):
    with pytest.raises(NotHashableKeyError, match="hashable.*tuples") as info:
        UNHASHABLE[name](ctx).collect()
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("action", ["countByKey", "countByValue"])
def test_unhashable_in_count_actions(ctx, action):
    data = ctx.parallelize([([1], 1)], 2) if action == "countByKey" else ctx.parallelize([[1]], 2)
    with pytest.raises(NotHashableKeyError, match="hashable"):
        getattr(data, action)()


NOT_PAIRS = {
    "reduceByKey": lambda d: d.reduceByKey(add),
    "foldByKey": lambda d: d.foldByKey(0, add),
    "aggregateByKey": lambda d: d.aggregateByKey(0, add, add),
    "combineByKey": lambda d: d.combineByKey(str, add, add),
    "groupByKey": lambda d: d.groupByKey(),
    "partitionBy": lambda d: d.partitionBy(2),
    "mapValues": lambda d: d.mapValues(str),
    "flatMapValues": lambda d: d.flatMapValues(str),
    "join": lambda d: d.join(d.context.parallelize([(1, 1)])),
    "leftOuterJoin-right": lambda d: d.context.parallelize([(1, 1)]).leftOuterJoin(d),
    "subtractByKey": lambda d: d.subtractByKey(d.context.parallelize([(1, 1)])),
    "sortByKey": lambda d: d.sortByKey(),
    "sortByKey-one-partition": lambda d: d.sortByKey(numPartitions=1),
    "countByKey": lambda d: d.context.parallelize(d.countByKey().items()),
    "lookup": lambda d: d.context.parallelize(d.lookup(1)),
}


@pytest.mark.parametrize("name", NOT_PAIRS)
@pytest.mark.parametrize("records", [[1, 2, 3], [(1, 2, 3)], [None]], ids=["ints", "triples", "none"])
def test_by_key_operation_on_records_that_are_not_pairs(ctx, name, records):
    with pytest.raises(NotAPairError, match=r"\(key, value\) pairs.*map\(lambda") as info:
        NOT_PAIRS[name](ctx.parallelize(records, 2)).collect()
    assert isinstance(info.value, TypeError)


# -- exceptions raised by user functions -------------------------------------------------------------------
def reciprocal(x):
    return 1 / x


def merge_strict(a, b):
    if a == b:
        raise KeyError(f"duplicate value {a}")
    return a + b


#: name: (program, error type, message, user function in the traceback, operator and dataset in the note)
USER_ERRORS = {
    "map": (lambda c: c.parallelize([2, 1, 0], 3).setName("numbers").map(reciprocal).collect(),
            ZeroDivisionError, "division by zero", "reciprocal", "Map", "numbers"),
    "map-after-shuffle": (lambda c: c.parallelize([(0, 1), (1, 1)], 2).reduceByKey(add).keys().setName("keys")
                          .map(reciprocal).collect(), ZeroDivisionError, "division", "reciprocal", "Map", "keys"),
    "reduceByKey": (lambda c: c.parallelize([("a", 1), ("a", 1)], 1).setName("pairs").reduceByKey(merge_strict)
                    .collect(), KeyError, "duplicate value 1", "merge_strict", "reduceByKey", "pairs"),
    "reduce": (lambda c: c.parallelize([5, 5], 1).setName("fives").reduce(merge_strict), KeyError, "duplicate value 5",
               "merge_strict", "reduce", "fives"),
    "foreach": (lambda c: c.parallelize([1, 0], 2).setName("xs").foreach(reciprocal), ZeroDivisionError, "division",
                "reciprocal", "foreach", "xs"),
    "take": (lambda c: c.parallelize([0], 1).setName("zero").map(reciprocal).take(1), ZeroDivisionError, "division",
             "reciprocal", "Map", "zero"),
    "sortBy": (lambda c: c.parallelize([3, 0], 2).setName("unsorted").sortBy(reciprocal).collect(),
               ZeroDivisionError, "division", "reciprocal", "KeyBy", "unsorted"),
    "max-key": (lambda c: c.parallelize([3, 0], 2).setName("m").max(key=reciprocal), ZeroDivisionError, "division",
                "reciprocal", "max", "m"),
    "user-type-error-in-mapValues": (lambda c: c.parallelize([("k", 1)], 1).setName("kv")
                                     .mapValues(lambda v: v + "!").collect(), TypeError, "unsupported operand",
                                     "<lambda>", "MapValues", "kv"),
}


@pytest.mark.parametrize("name", USER_ERRORS)
def test_user_error_keeps_type_message_traceback_and_names_where(ctx, name):
    build, error, message, function, operator, dataset = USER_ERRORS[name]
    with pytest.raises(error, match=message) as info:
        build(ctx)
    exc = info.value
    assert not isinstance(exc, (NotAPairError, NotHashableKeyError))
    notes = " ".join(getattr(exc, "__notes__", []))
    frames = [frame.name for frame in traceback.extract_tb(exc.__traceback__)]
    # in process the user's frames are in the traceback; from a worker they come as a note
    assert function in frames or f"in {function}" in notes, (frames, notes)
    for words in ("stage", "partition", repr(dataset), operator):
        assert words in notes, notes


def test_user_error_note_is_added_once(ctx):
    ds = ctx.parallelize([0], 1).map(reciprocal)
    for _ in range(2):
        with pytest.raises(ZeroDivisionError) as info:
            ds.collect()
        assert sum(note.startswith("okplan: raised in") for note in info.value.__notes__) == 1


def test_user_type_error_about_unpacking_is_not_reported_as_a_pair_error(ctx):
    with pytest.raises(TypeError, match="cannot unpack") as info:
        ctx.parallelize([("k", [1])], 1).flatMapValues(lambda v: [a for a, b in v]).collect()
    assert not isinstance(info.value, NotAPairError)


def test_context_still_works_after_a_failed_job(ctx):
    with pytest.raises(ZeroDivisionError):
        ctx.parallelize([0], 1).map(reciprocal).collect()
    assert ctx.parallelize([1, 2], 2).map(reciprocal).collect() == [1.0, 0.5]
