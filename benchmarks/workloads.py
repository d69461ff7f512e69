"""The benchmark workloads: one program each, written once for the RDD API (okplan and PySpark), once
for Dask Bag, and once in plain Python running the *same user functions* with builtin map/filter and
dict loops (the single-core limit). The plain Python answer is the reference every engine is checked
against, so a wrong engine cannot look fast.

User functions are module-level named functions (not lambdas) so that every engine calls exactly the
same code, and PySpark / Dask / okplan's cluster workers can import them by reference.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from itertools import chain
from operator import add, itemgetter
from typing import Any, Callable

# -- user functions ------------------------------------------------------------------------------------


def triple(x: int) -> int:
    return x * 3


def is_even(x: int) -> bool:
    return x % 2 == 0


def inc(x: int) -> int:
    return x + 1


def split_line(line: str) -> list[str]:
    return line.split()


def word_one(w: str) -> tuple[str, int]:
    return (w, 1)


#: distinct keys of the first shuffle of ``twoshuffle`` and of ``groupsort``
KEYS = 10_000


def key_mod(i: int) -> tuple[int, int]:
    return (i % KEYS, i)


def rekey(kv: tuple[int, int]) -> tuple[int, int]:
    return (kv[0] % 10, kv[1])


def left_pair(i: int) -> tuple[int, int]:
    # four left records per right key (see ``join_keys``)
    return (i >> 2, i)


def right_pair(k: int) -> tuple[int, int]:
    return (k, k * 2 + 1)


def skewed_pair(i: int) -> tuple[int, int]:
    # ``left_pair``, except that 30% of the records share key 0 (one reduce partition gets them all)
    return (0, i) if i % 10 < 3 else (i >> 2, i)


def wide_right_pairs(k: int) -> list[tuple[int, tuple[int, str]]]:
    """``skewjoin``'s right side: ``right_pair`` with a 96-character label, so that the side (n/4 records,
    about 14 MB pickled) is over the 10 MB broadcast threshold; a list, as a flatMap returns it (the
    plan cannot tell the side's size: adaptive planning learns it after its map stage)."""
    return [(k, (k * 2 + 1, "%096d" % k))]


def wide_join_value(kv: tuple[int, tuple[int, tuple[int, str]]]) -> int:
    v, (w, _) = kv[1]
    return v * w


def join_value(kv: tuple[int, tuple[int, int]]) -> int:
    v, w = kv[1]
    return v * w


def scatter_key(i: int) -> tuple[int, int]:
    return ((i * 7919) % KEYS, i)


def identity_plus(x: int) -> int:
    return x + 1


def heavy(x: int) -> int:
    """About 5 µs of pure-Python work per record: a linear congruential walk of ``HEAVY_STEPS``
    steps (80 steps measured 4.7 µs on the reference machine; the report prints the measured cost)."""
    acc = x
    for _ in range(HEAVY_STEPS):
        acc = (acc * 1103515245 + 12345) & 0xFFFFFFFF
    return acc


HEAVY_STEPS = 80


def heavy_pair(i: int) -> tuple[int, int]:
    """``(key, heavy(i))``: the expensive map side of ``notebook``'s shuffle."""
    return (i % KEYS, heavy(i))

_first = itemgetter(0)

# -- inputs ------------------------------------------------------------------------------------------


def make_lines(n: int, words_per_line: int = 10, vocab: int = 5_000, seed: int = 42) -> list[str]:
    """``n`` lines of words drawn with a skewed (roughly Zipf) frequency, the way real text looks."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab)]
    weights = [1.0 / (i + 1) for i in range(vocab)]
    drawn = rng.choices(words, weights, k=n * words_per_line)
    return [" ".join(drawn[i:i + words_per_line]) for i in range(0, len(drawn), words_per_line)]


def join_keys(n: int) -> int:
    """Right-side keys of ``join`` for ``n`` left records (each right key matches four left records)."""
    return max(1, n // 4)


# -- plain Python: the reference and the single-core limit --------------------------------------------


def py_pipeline(n: int) -> int:
    return functools.reduce(add, map(inc, filter(is_even, map(triple, range(n)))))


def py_reduce_by_key(pairs, func: Callable) -> dict:
    d: dict = {}
    for k, v in pairs:
        if k in d:
            d[k] = func(d[k], v)
        else:
            d[k] = v
    return d


def py_wordcount(lines: list[str]) -> dict:
    return py_reduce_by_key(map(word_one, chain.from_iterable(map(split_line, lines))), add)


def py_twoshuffle(n: int) -> dict:
    first = py_reduce_by_key(map(key_mod, range(n)), add)
    return py_reduce_by_key(map(rekey, first.items()), add)


def py_join(n: int) -> int:
    right: dict = {}
    for k, w in map(right_pair, range(join_keys(n))):
        right.setdefault(k, []).append(w)
    joined = ((k, (v, w)) for k, v in map(left_pair, range(n)) for w in right.get(k, ()))
    return functools.reduce(add, map(join_value, joined), 0)


def py_skewjoin(n: int) -> int:
    right: dict = {}
    for k, w in chain.from_iterable(map(wide_right_pairs, range(join_keys(n)))):
        right.setdefault(k, []).append(w)
    joined = ((k, (v, w)) for k, v in map(skewed_pair, range(n)) for w in right.get(k, ()))
    return functools.reduce(add, map(wide_join_value, joined), 0)


def py_groupsort(n: int) -> list:
    groups: dict = {}
    for k, v in map(scatter_key, range(n)):
        g = groups.get(k)
        if g is None:
            groups[k] = [v]
        else:
            g.append(v)
    return sorted(((k, len(vs)) for k, vs in groups.items()), key=_first)[:10]


def py_tiny(data: list[int]) -> list[int]:
    return list(map(identity_plus, data))


def py_cpuheavy(n: int) -> int:
    return functools.reduce(add, map(heavy, range(n)))


def py_copartjoin(n: int) -> int:
    # the same answer as ``join``: partitioning changes where records live, not what the join returns
    return py_join(n)


# -- the RDD API (okplan and PySpark) -------------------------------------------------------------------
# Each takes (context, prepared input, partitions) and returns a plain value.


def py_notebook(n: int) -> tuple:
    sums = py_reduce_by_key(map(heavy_pair, range(n)), add)
    values = list(sums.values())
    return (len(sums), sum(values), max(values), len(list(filter(is_even, values))), max(sums))


def rdd_pipeline(sc, n: int, parts: int) -> int:
    return sc.range(n, numSlices=parts).map(triple).filter(is_even).map(inc).reduce(add)


def rdd_wordcount(sc, lines: list[str], parts: int) -> dict:
    return dict(sc.parallelize(lines, parts).flatMap(split_line).map(word_one).reduceByKey(add, parts).collect())


def rdd_twoshuffle(sc, n: int, parts: int) -> dict:
    return dict(sc.range(n, numSlices=parts).map(key_mod).reduceByKey(add, parts)
                .map(rekey).reduceByKey(add, parts).collect())


def rdd_join(sc, n: int, parts: int) -> int:
    left = sc.range(n, numSlices=parts).map(left_pair)
    right = sc.range(join_keys(n), numSlices=parts).map(right_pair)
    return left.join(right, parts).map(join_value).fold(0, add)


def rdd_skewjoin(sc, n: int, parts: int) -> int:
    left = sc.range(n, numSlices=parts).map(skewed_pair)
    right = sc.range(join_keys(n), numSlices=parts).flatMap(wide_right_pairs)
    # every left key has a right record, so leftOuterJoin answers as join does; it may broadcast only the
    # right side, which is over the threshold: a shuffle join. 4 reduce partitions per input partition,
    # as a Spark job's many shuffle partitions: key 0's holds ~8x the median, which adaptive planning
    # splits (and it coalesces the small ones)
    return left.leftOuterJoin(right, 4 * parts).map(wide_join_value).fold(0, add)


def rdd_groupsort(sc, n: int, parts: int) -> list:
    return (sc.range(n, numSlices=parts).map(scatter_key).groupByKey(parts).mapValues(len)
            .sortByKey(True, parts).take(10))


def rdd_tiny(sc, data: list[int], parts: int) -> list[int]:
    return sc.parallelize(data, parts).map(identity_plus).collect()


def rdd_cpuheavy(sc, n: int, parts: int) -> int:
    return sc.range(n, numSlices=parts).map(heavy).reduce(add)


#: partitions of the pre-partitioned sides of ``copartjoin`` (the optimizer issue's benchmark)
COPART = 8


def rdd_notebook(sc, n: int, parts: int) -> tuple:
    """One expensive shuffle, then five different actions on it (as in a notebook session): with
    shuffle reuse its map side runs once, else five times."""
    sums = sc.range(n, numSlices=parts).map(heavy_pair).reduceByKey(add, parts)
    values = sums.values()
    return (sums.count(), values.sum(), values.max(), values.filter(is_even).count(), sums.keys().max())


def rdd_copartjoin_setup(sc, n: int, parts: int):
    """Both sides hash-partitioned the same way and cached, outside the timed part."""
    left = sc.range(n, numSlices=parts).map(left_pair).partitionBy(COPART).cache()
    right = sc.range(join_keys(n), numSlices=parts).map(right_pair).partitionBy(COPART).cache()
    left.count()
    right.count()
    return left, right


def rdd_copartjoin(sc, sides, parts: int) -> int:
    left, right = sides
    return left.join(right, COPART).map(join_value).fold(0, add)


def rdd_copartjoin_teardown(sides) -> None:
    for side in sides:
        side.unpersist()


# -- Dask Bag ------------------------------------------------------------------------------------------
# Each takes (dask.bag module, prepared input, partitions) and returns a dask object to compute.


def _add_value(acc: int, kv: tuple) -> int:
    return acc + kv[1]


def bag_pipeline(db, n: int, parts: int):
    return db.range(n, npartitions=parts).map(triple).filter(is_even).map(inc).fold(add)


def bag_wordcount(db, lines: list[str], parts: int):
    return (db.from_sequence(lines, npartitions=parts).map(split_line).flatten().map(word_one)
            .foldby(_first, _add_value, 0, add, 0))


def bag_twoshuffle(db, n: int, parts: int):
    first = db.range(n, npartitions=parts).map(key_mod).foldby(_first, _add_value, 0, add, 0)
    return first.map(rekey).foldby(_first, _add_value, 0, add, 0)


def bag_join(db, n: int, parts: int):
    # Dask Bag's join takes an in-memory iterable on the other side: the idiomatic hash join
    right = list(map(right_pair, range(join_keys(n))))
    left = db.range(n, npartitions=parts).map(left_pair)
    return left.join(right, _first, _first).map(_bag_join_value).fold(add, initial=0)


def _bag_join_value(pair: tuple) -> int:
    # Bag.join yields (right record, left record)
    (k, w), (_, v) = pair
    return join_value((k, (v, w)))


def _len_value(kv: tuple) -> tuple:
    return (kv[0], len(kv[1]))


def bag_groupsort(db, n: int, parts: int):
    grouped = db.range(n, npartitions=parts).map(scatter_key).groupby(_first)
    return grouped.map(_len_group).topk(10, key=_neg_first)


def _len_group(kv: tuple) -> tuple:
    return (kv[0], len(kv[1]))


def _neg_first(kv: tuple) -> int:
    return -kv[0]


def bag_tiny(db, data: list[int], parts: int):
    return db.from_sequence(data, npartitions=parts).map(identity_plus)


def bag_cpuheavy(db, n: int, parts: int):
    return db.range(n, npartitions=parts).map(heavy).fold(add)


# -- answers -----------------------------------------------------------------------------------------


def _as_dict(x: Any) -> dict:
    return dict(x)


def _as_list(x: Any) -> list:
    return [tuple(r) if isinstance(r, (list, tuple)) else r for r in x]


@dataclass(frozen=True)
class Workload:
    """One benchmark program, in every form an engine can run, and how to check its answer."""

    name: str
    description: str
    #: records at ``--size 1`` (the unit the workload counts: numbers, lines, left records)
    full_records: int
    make_input: Callable[[int], Any]
    python: Callable[[Any], Any]
    rdd: Callable[[Any, Any, int], Any] | None
    bag: Callable[[Any, Any, int], Any] | None
    #: turns any engine's answer into a comparable value
    normalize: Callable[[Any], Any] = lambda x: x
    #: runs per timed sample; a sample is the median of them (for jobs too short to time once)
    inner: int = 1
    #: untimed preparation for RDD engines (e.g. cache pre-partitioned inputs), and its undo
    rdd_setup: Callable[[Any, Any, int], Any] | None = None
    rdd_teardown: Callable[[Any], None] | None = None
    #: smallest sensible record count (a smoke run never goes below it)
    min_records: int = 10

    def records(self, scale: float) -> int:
        return max(self.min_records, int(self.full_records * scale))


def _ident(n: int) -> int:
    return n


WORKLOADS: dict[str, Workload] = {w.name: w for w in (
    Workload("pipeline", "range -> map -> filter -> map -> reduce", 1_000_000, _ident,
             py_pipeline, rdd_pipeline, bag_pipeline),
    Workload("wordcount", "flatMap(split) -> map((w, 1)) -> reduceByKey(add); 10 words a line",
             200_000, make_lines, py_wordcount, rdd_wordcount, bag_wordcount, _as_dict),
    Workload("twoshuffle", "map -> reduceByKey (10k keys) -> map(rekey) -> reduceByKey (10 keys)",
             1_000_000, _ident, py_twoshuffle, rdd_twoshuffle, bag_twoshuffle, _as_dict),
    Workload("join", "n left records x n/4 right keys, join -> map -> fold", 500_000, _ident,
             py_join, rdd_join, bag_join),
    Workload("skewjoin", "leftOuterJoin, 30% of the n left records on one key, n/4 wide right records "
             "(~14 MB, size unknown to the plan): a skewed shuffle join", 500_000, _ident,
             py_skewjoin, rdd_skewjoin, None),
    Workload("groupsort", "groupByKey (10k keys) -> mapValues(len) -> sortByKey -> take(10)",
             500_000, _ident, py_groupsort, rdd_groupsort, bag_groupsort,
             lambda x: sorted(_as_list(x))),
    Workload("tiny", "parallelize 1,000 records -> map -> collect (median of 20)", 1_000,
             lambda n: list(range(n)), py_tiny, rdd_tiny, bag_tiny, _as_list, inner=20,
             min_records=1_000),
    Workload("cpuheavy", "range -> map(~5 us of Python per record) -> reduce", 200_000, _ident,
             py_cpuheavy, rdd_cpuheavy, bag_cpuheavy),
    Workload("notebook", "range -> map(~5 us) -> reduceByKey (10k keys), then 5 actions on it "
             "(okplan-*-noreuse: no shuffle reuse)", 200_000, _ident, py_notebook, rdd_notebook, None),
    Workload("copartjoin", "join of two sides already partitionBy(8) and cached (optimizer benchmark)",
             500_000, _ident, py_copartjoin, rdd_copartjoin, None,
             rdd_setup=rdd_copartjoin_setup, rdd_teardown=rdd_copartjoin_teardown),
)}

__all__ = ["WORKLOADS", "Workload", "heavy", "HEAVY_STEPS"]
