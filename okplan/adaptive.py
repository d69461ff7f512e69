"""Adaptive planning: a job's plan changed from what its data turns out to be, before its stages run,
where the change cannot be seen (Spark SQL's adaptive query execution, for RDDs).

**Broadcast hash join.** A join whose one side is small is run without shuffling the other side: the
session computes the small side first (one job that caches it: the side's functions run once, as they
would have), and, when its pickled size is at most the broadcast threshold, every task of the big side
probes a dict of it (``L.BroadcastJoin``); otherwise the computed partitions feed the ordinary shuffle
join, so nothing runs twice. The records stay where that job left them (a temporary cache: in memory,
or in Redis on a cluster, whose tasks read them from there); only their count and size reach the
session. Candidates are the hash joins (``join``, ``leftOuterJoin``: the right side
is built; ``rightOuterJoin``: the left side; an inner join: the smaller side) whose big side would be
shuffled and whose small side has a record count the plan knows (source sizes through one-to-one or
record-dropping steps) of at most ``threshold / 8`` (so the session never collects a big side to learn
that it is big).

A broadcast join's output has the big side's partitions, in the big side's order, where the shuffle
join's has the join's partitioner and the order of its reduce side. So it applies only where neither is
observable (``hidden``): every path from the join to the action goes through steps whose output, as a
multiset, depends only on their input as a multiset (``map``, ``filter``, ``flatMap``, ``mapValues``,
``keys``, ``values``, the joins, a shuffle that moves records, ``reduceByKey`` and ``distinct``, whose
functions PySpark requires to be associative and commutative) and ends at an action whose answer
depends only on that multiset (``count``, ``sum``, ``fold(0, add)``: ``PartitionAction.order_free``).
``collect``, ``take``, ``glom``, ``mapPartitions``, ``groupByKey``, ``cache()``, a shuffle elided
because the join's output was partitioned, ... keep the shuffle join.

Switches: ``Context(adaptive=False)`` or ``OKPLAN_ADAPTIVE=0`` turn it off; the threshold is
``Context(broadcast_threshold=...)`` or ``OKPLAN_BROADCAST_THRESHOLD`` (bytes, or ``10MB``, ``512kB``;
0 never broadcasts), 10 MB by default as Spark's ``autoBroadcastJoinThreshold``.
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import Callable, Iterator

from .actions import PartitionAction
from .logical import nodes as L
from .logical.nodes import fresh_id, human_bytes
from .logical.plan import LogicalPlan, postorder
from .logical.traits import traits_of

#: Spark's ``spark.sql.autoBroadcastJoinThreshold``
DEFAULT_BROADCAST_THRESHOLD = 10 * 1024 * 1024
#: a candidate side holds at most threshold / this many records (no pickled record is much smaller)
_MIN_RECORD_BYTES = 8
#: records of each partition pickled to estimate the side's size
_SAMPLE = 256

#: narrow steps whose output multiset depends only on their input multiset (no partition index, no
#: position, no neighbours)
_MULTISET_NARROW = frozenset({"map", "flatMap", "filter", "mapValues", "flatMapValues", "keyBy", "keys", "values",
                              "pairWithNone", "pairWithTrue", "sortPartition", "join", "leftOuterJoin",
                              "rightOuterJoin", "fullOuterJoin", "subtractByKey"})
#: aggregating shuffles whose per-key answer does not depend on the order values arrive in (PySpark asks
#: for an associative and commutative function; distinct keeps one of equal records)
_ORDER_FREE_AGGREGATES = frozenset({"reduceByKey", "distinct"})

#: runs a plan rooted at a node with an action; returns the action's per-partition results
RunPlan = Callable[[L.Node, PartitionAction], list]


def adaptive_enabled(option: bool | None) -> bool:
    """``Context(adaptive=...)``, else ``OKPLAN_ADAPTIVE`` (on unless ``0``/``false``/``off``/``no``).

    >>> adaptive_enabled(False), adaptive_enabled(None) in (True, False)
    (False, True)
    """
    if option is not None:
        return bool(option)
    return os.environ.get("OKPLAN_ADAPTIVE", "1").strip().lower() not in ("0", "false", "off", "no")


_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024 ** 2, "mb": 1024 ** 2, "g": 1024 ** 3, "gb": 1024 ** 3}


def parse_bytes(text: str | int, what: str = "OKPLAN_BROADCAST_THRESHOLD") -> int:
    """Bytes from ``10485760``, ``10MB``, ``512 kB``, ``1g``; ``ValueError`` naming ``what`` otherwise.

    >>> parse_bytes("10MB"), parse_bytes(" 512 kB "), parse_bytes(0)
    (10485760, 524288, 0)
    """
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    if m is None or m.group(2).lower() not in _UNITS:
        raise ValueError(f"{what} must be a size in bytes such as 10485760, 10MB or 512kB; got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def broadcast_threshold(option: int | str | None) -> int:
    """``Context(broadcast_threshold=...)``, else ``OKPLAN_BROADCAST_THRESHOLD``, else 10 MB."""
    if option is not None:
        return parse_bytes(option, "broadcast_threshold")
    env = os.environ.get("OKPLAN_BROADCAST_THRESHOLD")
    return parse_bytes(env) if env not in (None, "") else DEFAULT_BROADCAST_THRESHOLD


@dataclass(frozen=True)
class Decision:
    """One adaptive decision, as ``explain(analyze=True)`` shows it."""

    node: str
    text: str

    def __str__(self) -> str:
        return f"adaptive: {self.node}: {self.text}"


def records_at_most(node: L.Node) -> int | None:
    """An upper bound on the dataset's records from source sizes, or None: through one-to-one steps,
    steps that only drop records (filter, sample) and aggregations (at most one record per input record).

    >>> records_at_most(ctx.parallelize(range(10)).filter(bool).map(str)._node)
    10
    >>> records_at_most(ctx.parallelize(range(10)).flatMap(range)._node) is None
    True
    """
    if isinstance(node, (L.Source, L.RangeSource)):
        return node.num_records
    if isinstance(node, L.CachedRead):
        return records_at_most(node.lineage) if node.lineage is not None else None
    traits = traits_of(node)
    shrinks = traits.keeps_records or isinstance(node, (L.Shuffle, L.PartialAggregate))
    if not (traits.one_to_one or shrinks):
        return None
    bounds = [records_at_most(i) for i in node.inputs]
    return None if None in bounds else sum(bounds)  # type: ignore[arg-type]


def hidden_nodes(plan: LogicalPlan, order_free: bool) -> set[int]:
    """Ids (``id(node)``) of the nodes of ``plan`` whose partitioning and order nothing can observe:
    the root when the action is ``order_free``, and every node all of whose readers pass on only its
    records' multiset to a hidden node."""
    if not order_free:
        return set()
    readers: dict[int, list[tuple[L.Node, int]]] = {}
    order = _preorder(plan.root)
    for n in order:
        for pos, i in enumerate(n.inputs):
            readers.setdefault(id(i), []).append((n, pos))
    hidden = {id(plan.root)}
    for n in order:  # readers before the nodes they read
        if n is plan.root:
            continue
        rs = readers.get(id(n), [])
        if rs and all(id(r) in hidden and _passes_multiset(r, pos, readers) for r, pos in rs):
            hidden.add(id(n))
    return hidden


def _preorder(root: L.Node) -> list[L.Node]:
    """Every node after all the nodes that read it (reverse topological order)."""
    return list(reversed(postorder(root)))


def _passes_multiset(reader: L.Node, pos: int, readers: dict[int, list]) -> bool:
    """True when ``reader``'s output, as a multiset, depends only on the multiset of its input ``pos``."""
    if isinstance(reader, L.Narrow):
        return reader.kind in _MULTISET_NARROW
    if isinstance(reader, (L.Union, L.Coalesce)):
        return True
    if isinstance(reader, L.Shuffle):
        return not reader.elided and (reader.aggregator is None or reader.kind in _ORDER_FREE_AGGREGATES)
    if isinstance(reader, L.PartialAggregate):
        return reader.for_kind in _ORDER_FREE_AGGREGATES
    if isinstance(reader, (L.HashJoin, L.BroadcastJoin)):
        return pos not in getattr(reader, "elided", ())
    if isinstance(reader, L.CoGroup):
        # value lists keep arrival order: hidden only when every reader forms joined pairs from them
        return pos not in reader.elided and all(isinstance(r, L.Narrow) and r.kind in _MULTISET_NARROW
                                                for r, _ in readers.get(id(reader), []))
    if isinstance(reader, L.Persist):
        return reader.scope == "job"
    return False


#: steps that handle each record on its own, in order: where their input's partitions begin and end
#: cannot show in their output's concatenation
_PER_RECORD = frozenset({"map", "flatMap", "filter", "mapValues", "flatMapValues", "keyBy", "keys", "values",
                         "pairWithNone", "pairWithTrue"})
#: records per task a coalesced reduce stage aims at (Spark aims at 64 MB per partition)
COALESCE_RECORDS = 65_536


def boundaries_hidden(plan: LogicalPlan, order_free: bool, concatenates: bool) -> set[int]:
    """Ids of the nodes whose partition boundaries nothing can observe: ``hidden_nodes``, the root when
    the action concatenates the partitions (``collect``), a node read only by per-record steps of such
    nodes, and a node a shuffle reads without combining it (the reduce side reads the map outputs one
    after the other, so it gets the same sequence however they were cut)."""
    multiset = hidden_nodes(plan, order_free)
    readers: dict[int, list[tuple[L.Node, int]]] = {}
    order = _preorder(plan.root)
    for n in order:
        for pos, i in enumerate(n.inputs):
            readers.setdefault(id(i), []).append((n, pos))
    hidden = set(multiset)
    if concatenates or order_free:
        hidden.add(id(plan.root))

    def passes(r: L.Node, pos: int) -> bool:
        if isinstance(r, L.Narrow) and r.kind in _PER_RECORD or isinstance(r, L.Union):
            return id(r) in hidden
        if isinstance(r, L.Shuffle):
            return not r.elided and not r.combined
        if isinstance(r, L.PartialAggregate):  # combines per map task: only associative functions
            return r.for_kind in _ORDER_FREE_AGGREGATES
        if isinstance(r, (L.CoGroup, L.HashJoin)):
            return pos not in r.elided
        return False

    for n in order:
        rs = readers.get(id(n), [])
        if n is not plan.root and rs and all(passes(r, pos) for r, pos in rs):
            hidden.add(id(n))
    return hidden


def plan_coalescing(plan: LogicalPlan, order_free: bool, concatenates: bool
                    ) -> tuple[LogicalPlan, list[Decision]]:
    """``plan`` with reduce stages whose partition boundaries cannot show run as fewer tasks, each
    reading a contiguous run of reduce partitions (``Coalesce`` above the shuffle), when the plan knows
    their input holds few records: at most ``COALESCE_RECORDS`` per task. Each task still aggregates
    each reduce partition on its own and concatenates them, so the records and their order are those
    of the partitions one after the other."""
    decisions: list[Decision] = []
    if not (order_free or concatenates):
        return plan, decisions
    hidden = boundaries_hidden(plan, order_free, concatenates)

    def coalesce(node: L.Node, original: L.Node) -> L.Node | None:
        if id(original) not in hidden or node.num_partitions < 2:
            return None
        if isinstance(node, L.Shuffle):
            if node.elided:
                return None
        elif not (isinstance(node, (L.CoGroup, L.HashJoin)) and not node.elided):
            return None
        bounds = [records_at_most(i) for i in node.inputs]
        if None in bounds:
            return None
        records = sum(bounds)  # type: ignore[arg-type]
        tasks = max(1, -(-records // COALESCE_RECORDS))
        if tasks >= node.num_partitions:
            return None
        name = node.kind if isinstance(node, L.Shuffle) else getattr(node, "how", "cogroup")
        decisions.append(Decision(f"{name} #{node.nid}", f"{node.num_partitions} reduce partitions read by "
                                  f"{tasks} task{'s' if tasks != 1 else ''}, at most {records:,} records"))
        return L.Coalesce(inputs=(node,), target=tasks, label=node.label, callsite=node.callsite)

    return plan.transform(coalesce, with_original=True), decisions


def _sized(records: Iterator) -> tuple[int, int | None]:
    """A partition's records and pickled size, the size from its first ``_SAMPLE`` records (None when
    a record does not pickle: it could not travel to the tasks). A task computes it where the
    partition is, so the records never travel to the session.

    >>> _sized((i, -i) for i in range(1000))
    (1000, 9050)
    """
    sample = list(islice(records, _SAMPLE))
    n = len(sample) + sum(1 for _ in records)
    if not sample:
        return 0, 0
    try:
        return n, len(pickle.dumps(sample, protocol=5)) * n // len(sample)
    except Exception:
        return n, None


_records_of = itemgetter(0)


def plan_broadcasts(plan: LogicalPlan, order_free: bool, threshold: int, run: RunPlan,
                    temporary: list[str] | None = None) -> tuple[LogicalPlan, list[Decision]]:
    """``plan`` with its hidden candidate joins decided: a ``BroadcastJoin`` where the small side, once
    computed, is at most ``threshold`` bytes pickled, else the shuffle join reading the computed side.
    Runs one job per candidate (``run``), which leaves the small side in a temporary cache (its id
    goes to ``temporary``: the caller drops it after the job) and returns only its size: the records
    stay where the executor keeps caches (in Redis on a cluster, whose tasks read them from there)."""
    decisions: list[Decision] = []
    if threshold <= 0 or not order_free:
        return plan, decisions
    hidden = hidden_nodes(plan, order_free)
    max_records = threshold // _MIN_RECORD_BYTES

    def decide(node: L.Node, original: L.Node) -> L.Node | None:
        if not isinstance(node, L.HashJoin) or id(original) not in hidden:
            return None
        side = _build_side(node, max_records)
        if side is None:
            return None
        stream_pos = 1 - side
        name = "left" if side == 0 else "right"
        small = node.inputs[side]
        cache_id = f"broadcast-{fresh_id()}"
        if temporary is not None:
            temporary.append(cache_id)
        persisted = L.Persist(inputs=(small,), cache_id=cache_id, scope="context", label=small.label,
                              callsite=small.callsite)
        sized = run(persisted, PartitionAction(_sized, f"adaptive: {name} side of a join", counts=_records_of))
        records = sum(map(_records_of, sized))
        size = None if any(b is None for _, b in sized) else sum(b for _, b in sized)
        figures = f"{name} side {records:,} records / " + ("not picklable" if size is None else human_bytes(size))
        where = f"{node.how} #{node.nid}"
        # the join reads the computed partitions where they were left: the side's functions do not run again
        computed = L.CachedRead(cache_id=cache_id, partitions=small.num_partitions, partitioner_=small.partitioner,
                                lineage=small, label=small.label, callsite=small.callsite)
        if size is None or size > threshold:
            decisions.append(Decision(where, f"shuffle join kept, {figures} over the broadcast threshold "
                                             f"{human_bytes(threshold)}"))
            return _with_input(node, side, computed)
        decisions.append(Decision(where, f"broadcast join, {figures} (threshold {human_bytes(threshold)})"))
        return L.BroadcastJoin(inputs=(node.inputs[stream_pos], computed), how=node.how, build_left=side == 0,
                               reason=figures, label=node.label, callsite=node.callsite, nid=node.nid)

    return plan.transform(decide, with_original=True), decisions


def _shares_work(node: L.Node) -> bool:
    """True when ``node``'s plan fills a cache or holds a subplan shared inside the job (``Persist``:
    ``cache()`` not filled yet, or what ``materialize_shared`` makes for a self-join): the other side may
    read it too, and computing this side in a job of its own would compute it twice."""
    return any(isinstance(n, L.Persist) for n in postorder(node))


def _with_input(node: L.Node, pos: int, new: L.Node) -> L.Node:
    inputs = list(node.inputs)
    inputs[pos] = new
    return node.replace(inputs=tuple(inputs))


def _build_side(join: L.HashJoin, max_records: int) -> int | None:
    """The input to broadcast (0 left, 1 right), or None: both inputs are ones the join would shuffle
    (one read in place already saves the shuffle), and the built one is small by the plan's own count."""
    if join.elided:
        return None
    sides = {"join": (1, 0), "leftOuterJoin": (1,), "rightOuterJoin": (0,)}.get(join.how, ())
    best = None
    for side in sides:
        if _shares_work(join.inputs[side]):
            continue  # its job would compute a subplan the rest of the plan computes again
        bound = records_at_most(join.inputs[side])
        if bound is not None and bound <= max_records and (best is None or bound < best[1]):
            best = (side, bound)
    return None if best is None else best[0]
