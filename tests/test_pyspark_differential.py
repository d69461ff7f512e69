"""Differential tests: the same programs on okplan and on a real PySpark give the same results.

Optional: runs only when asked for (``pytest -m pyspark``, or ``OKPLAN_PYSPARK=1``), since starting
Spark and running every program on it takes minutes; skipped when ``pyspark`` (or a Java runtime) is
not installed. Two tables run here:

* every ``CASES`` table of the ``test_api_*`` modules: PySpark must give the hard-coded expected value
  (which keeps those tables honest) and so must okplan; ids in a module's ``OKPLAN_ONLY`` are
  deliberate differences and skipped;
* ``PROGRAMS`` below: bigger programs with no hard-coded answer, compared engine to engine.
"""

from __future__ import annotations

import importlib
import os
import random
from operator import add

import pytest
from api_cases import Raises, matches, outcome

pyspark = pytest.importorskip("pyspark")

pytestmark = pytest.mark.pyspark

MODULES = ["test_api_narrow", "test_api_bykey", "test_api_sort", "test_api_joins", "test_api_actions",
           "test_api_stats", "test_api_context", "test_api_errors", "test_api_more"]


@pytest.fixture(scope="module")
def spark(request):
    if "pyspark" not in (request.config.getoption("markexpr") or "") and not os.environ.get("OKPLAN_PYSPARK"):
        pytest.skip("differential tests against PySpark run with: pytest -m pyspark")
    # PySpark refuses to hash strings without it; its workers get the same value
    os.environ.setdefault("PYTHONHASHSEED", "0")
    try:
        sc = pyspark.SparkContext("local[2]", "okplan-differential")
    except Exception as exc:  # noqa: BLE001 - no Java, no Spark: nothing to compare with
        pytest.skip(f"cannot start a SparkContext: {exc}")
    sc.setLogLevel("OFF")
    from pyspark import cloudpickle

    for name in MODULES + [__name__]:
        cloudpickle.register_pickle_by_value(importlib.import_module(name))  # workers cannot import tests/
    yield sc
    sc.stop()


def _table_cases():
    for name in MODULES:
        module = importlib.import_module(name)
        skip = getattr(module, "OKPLAN_ONLY", set())
        for case in module.CASES:
            if case not in skip:
                yield pytest.param(name, case, id=f"{name.removeprefix('test_api_')}-{case}")


_on_spark: dict = {}


def on_spark(spark, key, program):
    """PySpark's outcome of ``program``, computed once however many executors okplan is tested on."""
    if key not in _on_spark:
        _on_spark[key] = outcome(program, spark)
    return _on_spark[key]


@pytest.mark.parametrize("module, case", list(_table_cases()))
def test_table_case_matches_pyspark(spark, ctx, module, case):
    program, expected = importlib.import_module(module).CASES[case]
    spark_result = on_spark(spark, (module, case), program)
    assert matches(spark_result, expected), f"PySpark gives {spark_result!r}, the table says {expected!r}"
    assert matches(outcome(program, ctx), expected)


# -- programs compared engine to engine ------------------------------------------------------------------
_rng = random.Random(20260101)
TEXT = [" ".join(_rng.choice(["okplan", "spark", "plan", "map", "reduce", "shuffle", "key", "a", "b"])
                 for _ in range(_rng.randrange(0, 12))) for _ in range(300)]
NUMBERS = [_rng.randrange(-1000, 1000) for _ in range(1000)]
FLOATS = [_rng.uniform(-5, 5) for _ in range(500)]
PAIRS = [(_rng.choice([None, "k1", "k2", ("t", 1), 3, -1]), _rng.randrange(100)) for _ in range(400)]


def rounded(values, places=6):
    return [round(v, places) for v in values]


PROGRAMS = {
    "wordcount": lambda sc: sorted(sc.parallelize(TEXT, 4).flatMap(str.split).map(lambda w: (w, 1))
                                   .reduceByKey(add).collect()),
    "wordcount-top": lambda sc: sc.parallelize(TEXT, 3).flatMap(str.split).map(lambda w: (w, 1)).reduceByKey(add)
    .map(lambda kv: (kv[1], kv[0])).sortByKey(False).take(5),
    "numbers-pipeline": lambda sc: sc.parallelize(NUMBERS, 5).map(lambda x: x * 3).filter(lambda x: x % 2)
    .map(lambda x: x // 7).collect(),
    "numbers-sort": lambda sc: sc.parallelize(NUMBERS, 4).sortBy(lambda x: (x % 10, x), numPartitions=3).collect(),
    "numbers-sort-desc-glom-flat": lambda sc: [x for p in sc.parallelize(NUMBERS, 4).sortBy(abs, False, 5)
                                               .map(abs).glom().collect() for x in p],
    "numbers-distinct-count": lambda sc: sc.parallelize(NUMBERS, 4).map(lambda x: x % 97).distinct().count(),
    "numbers-stats": lambda sc: (lambda s: (s.count(), round(s.mean(), 6), round(s.stdev(), 6), s.max(), s.min()))(
        sc.parallelize(NUMBERS, 7).stats()),
    "numbers-histogram": lambda sc: sc.parallelize(NUMBERS, 3).histogram(7),
    "numbers-histogram-buckets": lambda sc: sc.parallelize(NUMBERS, 3).histogram([-1000, -10, 0, 10, 500, 999]),
    "floats-histogram": lambda sc: sc.parallelize(FLOATS, 4).histogram(5),
    "floats-sample-stats": lambda sc: rounded([sc.parallelize(FLOATS, 4).sampleStdev(),
                                               sc.parallelize(FLOATS, 4).sampleVariance()]),
    "numbers-top-takeOrdered": lambda sc: (sc.parallelize(NUMBERS, 4).top(5, key=abs),
                                           sc.parallelize(NUMBERS, 4).takeOrdered(5, key=lambda x: (x % 13, x))),
    "numbers-fold-aggregate": lambda sc: (sc.parallelize(NUMBERS, 6).fold(0, add),
                                          sc.parallelize(NUMBERS, 6).aggregate((0, 0), lambda a, x: (a[0] + x, a[1] + 1),
                                                                               lambda a, b: (a[0] + b[0], a[1] + b[1]))),
    "pairs-by-key": lambda sc: sorted(sc.parallelize(PAIRS, 4).aggregateByKey(
        (0, 0), lambda a, v: (a[0] + v, a[1] + 1), lambda a, b: (a[0] + b[0], a[1] + b[1])).collect(), key=repr),
    "pairs-groupByKey": lambda sc: sorted(sc.parallelize(PAIRS, 3).groupByKey(5).mapValues(sorted).collect(),
                                          key=repr),
    "pairs-countByKey": lambda sc: dict(sc.parallelize(PAIRS, 3).countByKey()),
    "pairs-self-join": lambda sc: sorted(sc.parallelize(PAIRS[:60], 3).join(sc.parallelize(PAIRS[30:90], 2))
                                         .collect(), key=repr),
    "pairs-outer-joins": lambda sc: [sorted(getattr(sc.parallelize(PAIRS[:50], 2), m)(sc.parallelize(PAIRS[40:80], 3))
                                            .collect(), key=repr)
                                     for m in ("leftOuterJoin", "rightOuterJoin", "fullOuterJoin")],
    "pairs-cogroup": lambda sc: sorted(sc.parallelize(PAIRS[:50], 2).cogroup(sc.parallelize(PAIRS[40:80], 3))
                                       .mapValues(lambda vs: tuple(sorted(v) for v in vs)).collect(), key=repr),
    "pairs-subtractByKey": lambda sc: sorted(sc.parallelize(PAIRS, 2).subtractByKey(
        sc.parallelize([(None, 0), (3, 0)], 1)).collect(), key=repr),
    "set-operations": lambda sc: (sorted(sc.parallelize(NUMBERS[:200], 3).intersection(sc.parallelize(NUMBERS[100:400], 2))
                                         .collect()),
                                  sorted(sc.parallelize(NUMBERS[:200], 3).subtract(sc.parallelize(NUMBERS[100:400], 2))
                                         .collect())),
    "cartesian-filter": lambda sc: sc.parallelize(range(6), 2).cartesian(sc.parallelize(range(4), 3))
    .filter(lambda xy: (xy[0] + xy[1]) % 3 == 0).collect(),
    "zipWithIndex-after-sort": lambda sc: sc.parallelize(NUMBERS[:50], 3).sortBy(lambda x: x).zipWithIndex()
    .filter(lambda xi: xi[1] % 10 == 0).collect(),
    "zipWithUniqueId-uneven": lambda sc: sc.parallelize(range(23), 4).filter(lambda x: x % 5).zipWithUniqueId()
    .collect(),
    "union-coalesce-glom": lambda sc: sc.union([sc.parallelize(range(i * 3), i + 1) for i in range(4)]).coalesce(3)
    .glom().collect(),
    "partitionBy-int-keys-glom": lambda sc: sc.parallelize([(x, None) for x in NUMBERS[:40]], 3).partitionBy(4)
    .glom().map(lambda p: sorted(k for k, _ in p)).collect(),
    "two-shuffles-then-sort": lambda sc: sc.parallelize(NUMBERS, 4).map(lambda x: (x % 17, x)).reduceByKey(add)
    .map(lambda kv: (kv[1] % 5, kv[0])).groupByKey().mapValues(sorted).sortByKey().collect(),
    "mapPartitionsWithIndex-sizes": lambda sc: sc.parallelize(NUMBERS, 7)
    .mapPartitionsWithIndex(lambda i, it: [(i, sum(1 for _ in it))]).collect(),
    "lookup-int-partitioned": lambda sc: sorted(sc.parallelize([(x % 7 - 3, x) for x in NUMBERS[:70]], 3)
                                                .partitionBy(4).lookup(-1)),
    "empty-everything": lambda sc: [outcome(f, sc) for f in (
        lambda s: s.parallelize([], 3).sortBy(lambda x: x).collect(),
        lambda s: s.parallelize([], 3).join(s.parallelize([], 2)).collect(),
        lambda s: s.parallelize([], 3).reduce(add),
        lambda s: s.parallelize([], 3).max(),
        lambda s: s.parallelize([], 3).first(),
        lambda s: s.parallelize([], 3).take(0),
        lambda s: s.parallelize([], 3).sum(),
        lambda s: s.parallelize([], 3).distinct().count(),
    )],
}


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_matches_pyspark(spark, ctx, name):
    program = PROGRAMS[name]
    expected = on_spark(spark, name, program)
    assert not isinstance(expected, Raises), expected
    assert outcome(program, ctx) == expected
