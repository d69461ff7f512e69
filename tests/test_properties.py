"""Random pipelines of DataSet operations give what a plain Python model of the same operations gives.

Records are ``(key, value)`` pairs with keys of mixed types (ints, strings, tuples, None) and int values,
so every step below can follow any other. The model is a list; it also tracks whether the operations
so far define an order (narrow operations keep it, shuffles lose it, ``sortBy`` makes one), and the
result is compared as a list when they do and as a multiset otherwise.
"""

from __future__ import annotations

from collections import Counter
from operator import add

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

KEYS = st.one_of(st.integers(-4, 4), st.text("ab", max_size=2), st.none(),
                 st.tuples(st.integers(0, 2), st.one_of(st.none(), st.text("xy", max_size=1))))
RECORDS = st.lists(st.tuples(KEYS, st.integers(-9, 9)), max_size=25)
PARTITIONS = st.integers(1, 6)


def rekey(kv):
    return (repr(kv[0])[:2], kv[1])


def model_by_key(records, fold):
    groups: dict = {}
    for k, v in records:
        groups.setdefault(k, []).append(v)
    return [(k, fold(vs)) for k, vs in groups.items()]


def model_join(left, right):
    return [(k, v + w) for k, v in left for k2, w in right if k2 == k]


def summarise(vs):
    return sum(vs) * 100 + len(vs)


# name: (strategy of the step's argument, DataSet step, model step, keeps the order)
STEPS = {
    "map": (st.just(None), lambda ds, _a, _o: ds.map(lambda kv: (kv[0], kv[1] * 2 + 1)),
            lambda m, _a, _o: [(k, v * 2 + 1) for k, v in m], True),
    "map-rekey": (st.just(None), lambda ds, _a, _o: ds.map(rekey), lambda m, _a, _o: [rekey(kv) for kv in m], True),
    "filter": (st.integers(2, 4), lambda ds, a, _o: ds.filter(lambda kv: kv[1] % a != 0),
               lambda m, a, _o: [kv for kv in m if kv[1] % a != 0], True),
    "flatMap": (st.just(None), lambda ds, _a, _o: ds.flatMap(lambda kv: [kv] * (kv[1] % 3)),
                lambda m, _a, _o: [kv for kv in m for _ in range(kv[1] % 3)], True),
    "mapValues": (st.just(None), lambda ds, _a, _o: ds.mapValues(lambda v: v - 1),
                  lambda m, _a, _o: [(k, v - 1) for k, v in m], True),
    "reduceByKey": (st.one_of(st.none(), PARTITIONS), lambda ds, a, _o: ds.reduceByKey(add, a),
                    lambda m, _a, _o: model_by_key(m, sum), False),
    "groupByKey": (st.one_of(st.none(), PARTITIONS), lambda ds, a, _o: ds.groupByKey(a).mapValues(summarise),
                   lambda m, _a, _o: model_by_key(m, summarise), False),
    "distinct": (st.one_of(st.none(), PARTITIONS), lambda ds, a, _o: ds.distinct(a),
                 lambda m, _a, _o: list(dict.fromkeys(m)), False),
    "sortBy": (st.tuples(st.booleans(), st.one_of(st.none(), PARTITIONS)),
               lambda ds, a, _o: ds.sortBy(repr, a[0], a[1]),
               lambda m, a, _o: sorted(m, key=repr, reverse=not a[0]), True),
    "join": (st.one_of(st.none(), PARTITIONS),
             lambda ds, a, other: ds.join(other, a).mapValues(lambda vw: vw[0] + vw[1]),
             lambda m, _a, other: model_join(m, other), False),
    "union": (st.just(None), lambda ds, _a, other: ds.union(other), lambda m, _a, other: m + other, True),
    "coalesce": (PARTITIONS, lambda ds, a, _o: ds.coalesce(a), lambda m, _a, _o: m, True),
    "repartition": (PARTITIONS, lambda ds, a, _o: ds.repartition(a), lambda m, _a, _o: m, False),
    "partitionBy": (PARTITIONS, lambda ds, a, _o: ds.partitionBy(a), lambda m, _a, _o: m, False),
    "cache": (st.just(None), lambda ds, _a, _o: ds.cache(), lambda m, _a, _o: m, True),
}

STEP = st.sampled_from(sorted(STEPS)).flatmap(lambda name: st.tuples(st.just(name), STEPS[name][0]))

# name: (DataSet action, model action, result depends on the order)
ACTIONS = {
    "collect": (lambda ds: ds.collect(), lambda m: m, True),
    "count": (lambda ds: ds.count(), len, False),
    "sum-values": (lambda ds: ds.values().sum(), lambda m: sum(v for _, v in m), False),
    "countByKey": (lambda ds: dict(ds.countByKey()), lambda m: dict(Counter(k for k, _ in m)), False),
    "take-3": (lambda ds: ds.take(3), lambda m: m[:3], True),
    "top-2": (lambda ds: ds.top(2, key=repr), lambda m: sorted(m, key=repr, reverse=True)[:2], False),
    "keys-distinct": (lambda ds: sorted(map(repr, ds.keys().distinct().collect())),
                      lambda m: sorted({repr(k) for k, _ in m}), False),
}


def multiset(records):
    return Counter(map(repr, records))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=RECORDS, slices=PARTITIONS, other=RECORDS, other_slices=PARTITIONS,
       steps=st.lists(STEP, max_size=5), action=st.sampled_from(sorted(ACTIONS)))
def test_random_pipeline_matches_the_python_model(ctx, data, slices, other, other_slices, steps, action):
    ds = ctx.parallelize(data, slices)
    other_ds = ctx.parallelize(other, other_slices)
    model, ordered = list(data), True
    cached = []
    for name, arg in steps:
        _, step, model_step, keeps_order = STEPS[name]
        ds = step(ds, arg, other_ds)
        model = model_step(model, arg, other)
        ordered = keeps_order and (ordered or name == "sortBy")
        if name == "cache":
            cached.append(ds)
    run, model_run, order_matters = ACTIONS[action]
    try:
        got = run(ds)
        if not order_matters:
            assert got == model_run(model)
        elif ordered:
            assert got == model_run(model)
        elif action == "collect":
            assert multiset(got) == multiset(model)
        else:
            assert len(got) == len(model_run(model)) and not multiset(got) - multiset(model)
    finally:
        for c in cached:
            c.unpersist()
