"""The seed's API (okdataset): ``Context().dataSet``, ``ChainableList``, ``Logger``, ``compute``,
``getProfile``."""

from __future__ import annotations

import datetime
import io
import json
import os
from operator import add

import pytest

import okplan
from okplan import ChainableList, Context, Logger


def test_seed_imports():
    assert {"ChainableList", "Context", "Logger"} <= set(okplan.__all__)


def test_seed_example_sums_to_435():
    assert Context().dataSet(ChainableList(range(1, 30)), label="sum", bufferSize=1).reduce(lambda x, y: x + y) == 435


def test_seed_example_on_every_executor(ctx):
    ds = ctx.dataSet(ChainableList(range(1, 30)), label="seed-sum", bufferSize=1)
    assert ds.getNumPartitions() == 29
    assert ds.reduce(lambda x, y: x + y) == 435
    assert ds.map(lambda x: (x % 2, x)).reduceByKey(add).collectAsMap() == {0: 210, 1: 225}
    assert ctx.dropDataSet("seed-sum")


def test_compute_materialises_and_returns_the_dataset(ctx):
    acc = ctx.accumulator(0)
    ds = ctx.dataSet(list(range(10)), bufferSize=3).map(lambda x: acc.add(1) or x * 2)
    assert ds.compute() is ds
    assert acc.value == 10
    assert ds.collect() == [x * 2 for x in range(10)] and ds.reduce(add) == 90
    assert acc.value == 10
    ds.unpersist()


def test_getProfile_after_a_job(ctx):
    ds = ctx.dataSet(list(range(100)), bufferSize=10).map(lambda x: (x % 3, x)).reduceByKey(add)
    ds.collect()
    profile = ds.getProfile()
    assert isinstance(profile, dict) and profile


# -- ChainableList -------------------------------------------------------------------------------------------
PAIRS = ChainableList([("a", 1), ("b", 2), ("a", 3)])

CHAINABLE = {
    "map": (lambda: ChainableList([1, 2, 3]).map(lambda x: x * 2), [2, 4, 6]),
    "flatMap": (lambda: ChainableList(["a b", "c"]).flatMap(str.split), ["a", "b", "c"]),
    "filter": (lambda: ChainableList(range(6)).filter(lambda x: x % 2), [1, 3, 5]),
    "reduce": (lambda: ChainableList(range(1, 30)).reduce(add), 435),
    "reduce-initial": (lambda: ChainableList([]).reduce(add, 7), 7),
    "reduceByKey": (lambda: PAIRS.reduceByKey(add), [("a", 4), ("b", 2)]),
    "groupByKey": (lambda: PAIRS.groupByKey(), [("a", [1, 3]), ("b", [2])]),
    "mapValues": (lambda: PAIRS.mapValues(str), [("a", "1"), ("b", "2"), ("a", "3")]),
    "flatMapValues": (lambda: PAIRS.flatMapValues(range), [("a", 0), ("b", 0), ("b", 1), ("a", 0), ("a", 1), ("a", 2)]),
    "keyBy": (lambda: ChainableList([1, 2]).keyBy(str), [("1", 1), ("2", 2)]),
    "groupBy": (lambda: ChainableList(range(5)).groupBy(lambda x: x % 2), [(0, [0, 2, 4]), (1, [1, 3])]),
    "sortByKey": (lambda: PAIRS.sortByKey(False), [("b", 2), ("a", 1), ("a", 3)]),
    "countByKey": (lambda: PAIRS.countByKey(), {"a": 2, "b": 1}),
    "countByValue": (lambda: ChainableList("abca").countByValue(), {"a": 2, "b": 1, "c": 1}),
    "union": (lambda: ChainableList([1]).union([2, 3]), [1, 2, 3]),
    "collectAsMap": (lambda: PAIRS.collectAsMap(), {"a": 3, "b": 2}),
    "isEmpty": (lambda: (ChainableList().isEmpty(), ChainableList([0]).isEmpty()), (True, False)),
    "keys": (lambda: PAIRS.keys(), ["a", "b", "a"]),
    "values": (lambda: PAIRS.values(), [1, 2, 3]),
    "distinct": (lambda: ChainableList([3, 1, 3, None, 1]).distinct(), [3, 1, None]),
    "sortBy": (lambda: ChainableList([3, 1, 2]).sortBy(lambda x: x), [1, 2, 3]),
    "sortBy-descending": (lambda: ChainableList([3, 1, 2]).sortBy(lambda x: x, ascending=False), [3, 2, 1]),
    "head": (lambda: ChainableList(range(20)).head(3), [0, 1, 2]),
    "head-default": (lambda: ChainableList(range(20)).head(), list(range(10))),
    "tail": (lambda: ChainableList(range(20)).tail(2), [18, 19]),
    "tail-zero": (lambda: ChainableList(range(5)).tail(0), []),
    "take": (lambda: ChainableList(range(5)).take(2), [0, 1]),
    "dict": (lambda: PAIRS.dict(), {"a": 3, "b": 2}),
    "dict-f": (lambda: ChainableList(["ab", "cd"]).dict(lambda s: (s[0], s[1])), {"a": "b", "c": "d"}),
    "join": (lambda: PAIRS.join([("a", "x"), ("c", "y"), ("a", "z")]),
             [("a", (1, "x")), ("a", (1, "z")), ("a", (3, "x")), ("a", (3, "z"))]),
    "zip": (lambda: ChainableList([1, 2, 3]).zip("ab"), [(1, "a"), (2, "b")]),
    "count": (lambda: ChainableList([1, 1, 2]).count(), 3),
    "count-value": (lambda: ChainableList([1, 1, 2]).count(1), 2),
    "collect": (lambda: ChainableList([1, 2]).collect(), [1, 2]),
    "first": (lambda: ChainableList([4, 5]).first(), 4),
    "sum": (lambda: ChainableList([1, 2, 3]).sum(), 6),
    "chain": (lambda: ChainableList(["a b a", "b"]).flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(add)
              .sortBy(lambda kv: kv[0]).head(1), [("a", 2)]),
}


@pytest.mark.parametrize("name", CHAINABLE)
def test_chainable_list(name):
    build, expected = CHAINABLE[name]
    result = build()
    assert result == expected
    if isinstance(expected, list) and name not in ("collect",):
        assert isinstance(result, ChainableList)


def test_chainable_list_is_an_eager_list():
    cl = ChainableList([1, 2])
    assert isinstance(cl, list) and cl.map(str) == ["1", "2"] and cl == [1, 2]


@pytest.mark.parametrize("build", [lambda: ChainableList([]).reduce(add), lambda: ChainableList([]).first()])
def test_chainable_list_empty_errors(build):
    with pytest.raises(ValueError):
        build()


# -- Logger ----------------------------------------------------------------------------------------------------
def lines(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_logger_writes_one_json_object_per_line():
    out = io.StringIO()
    log = Logger("wordcount", stream=out)
    log.info("Building list")
    log.info({"records": 29, "label": "sum"}, "built")
    first, second = lines(out)
    assert first["msg"] == "Building list" and first["level"] == "info" and first["name"] == "wordcount"
    assert first["pid"] == os.getpid() and first["hostname"]
    stamp = datetime.datetime.fromisoformat(first["time"])
    assert stamp.tzinfo is not None
    assert (second["records"], second["label"], second["msg"]) == (29, "sum", "built")


@pytest.mark.parametrize("threshold, logged", [
    ("trace", ["trace", "debug", "info", "warn", "error", "fatal"]),
    ("debug", ["debug", "info", "warn", "error", "fatal"]),
    ("info", ["info", "warn", "error", "fatal"]),
    ("warn", ["warn", "error", "fatal"]),
    ("error", ["error", "fatal"]),
    ("fatal", ["fatal"]),
])
def test_logger_threshold_from_LOG_LEVEL(monkeypatch, threshold, logged):
    monkeypatch.setenv("LOG_LEVEL", threshold.upper())
    out = io.StringIO()
    log = Logger("t", stream=out)
    for level in ("trace", "debug", "info", "warn", "error", "fatal"):
        getattr(log, level)(f"at {level}")
    assert [r["level"] for r in lines(out)] == logged
    assert [r["msg"] for r in lines(out)] == [f"at {level}" for level in logged]


def test_logger_default_threshold_is_info(monkeypatch):
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    out = io.StringIO()
    log = Logger("t", stream=out)
    log.debug("hidden")
    log.warning("shown")
    assert [(r["level"], r["msg"]) for r in lines(out)] == [("warn", "shown")]


def test_logger_keyword_fields_and_unserialisable_values():
    out = io.StringIO()
    Logger("t", stream=out).error("failed", job=3, obj=object())
    (record,) = lines(out)
    assert record["job"] == 3 and record["obj"].startswith("<object")


def test_logger_writes_to_stderr_by_default(capsys):
    Logger("t").error("to stderr")
    assert json.loads(capsys.readouterr().err)["msg"] == "to stderr"


def test_logger_rejects_unknown_level():
    with pytest.raises(ValueError, match="level"):
        Logger("t", level="loud")
