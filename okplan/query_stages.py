"""Adaptive query stages: a job's shuffle map stages run first, and the stages that read them are
re-planned from what they measured (Spark SQL's adaptive query execution, for RDDs).

The session (``Session.prepare``) calls ``replan`` after the plan-time decisions of ``adaptive.py``. It
looks for reduce stages whose re-planning cannot show (``adaptive.hidden_nodes``,
``adaptive.boundaries_hidden``), lowest first, and asks the ``StageRunner`` to run the map stages that
feed them as a job of their own whose output the executor keeps (pinned: whatever its budget, until the
job ends). Every executor runs that the same way: it is shuffle reuse (``shuffle_reuse.py``) within one
job. The map tasks report each reduce partition's records and (estimated pickled) bytes; from them:

- **coalescing**: contiguous reduce partitions go to one task while it reads at most
  ``adaptive.COALESCE_RECORDS`` records and ``ADVISORY_BYTES`` (Spark's ``CoalesceShufflePartitions``);
- **skew splitting** (joins): a reduce partition over ``skew_factor`` times the median of its side and
  over ``skew_threshold`` bytes (Spark's ``OptimizeSkewedJoin``: 5x and 256 MB) runs as several tasks,
  each joining a contiguous slice of that side's map outputs with the whole partition of the other
  side (``HashJoin.splits``). Splitting the streamed (left) side of ``join``/``leftOuterJoin`` keeps
  every record and its order (only partition boundaries move); splitting the built (right) side of
  ``join``/``rightOuterJoin`` changes the order, so it needs an order-free action;
- **broadcast join**: a join whose build side's size the plan cannot bound (files, ``flatMap``, a
  filter over a big input) runs that side's map stage alone first; when it turns out at most the
  broadcast threshold, the session reads it back from the kept output (no function runs again) and the
  other side is not shuffled at all.

The stages that ran first are then skipped by the job (they read the kept output), so every user
function runs once. A subplan another part of the job also computes (a ``Persist``: ``cache()`` not yet
filled, a self-join's shared side) is never run first alone.
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass
from typing import Protocol

from .adaptive import COALESCE_RECORDS, Decision, boundaries_hidden, hidden_nodes, records_at_most
from .logical import nodes as L
from .logical.nodes import human_bytes
from .logical.plan import LogicalPlan, postorder
from .physical.planner import Keep, ShuffleSlot

#: bytes per coalesced task at most (Spark's ``spark.sql.adaptive.advisoryPartitionSizeInBytes``)
ADVISORY_BYTES = 64 * 1024 * 1024
#: Spark's ``spark.sql.adaptive.skewJoin.skewedPartitionFactor``
DEFAULT_SKEW_FACTOR = 5.0
#: a partition smaller than this is never split; Spark's default is 256 MB for a JVM task, a Python task
#: joins about 1 MB of pickled pairs (50-100k records) in a tenth of a second
DEFAULT_SKEW_THRESHOLD = 1024 * 1024
#: reduce partitions a shuffle needs before its map stage runs first only to coalesce them: a job of its
#: own costs about as much as a dozen small tasks (joins run first for skew and broadcast at any count)
MIN_COALESCE_PARTITIONS = 16
#: rounds of run-then-re-plan in one job at most (one per level of nested shuffles)
_MAX_ROUNDS = 32


def skew_factor(option: float | str | None) -> float:
    """``Context(skew_factor=...)``, else ``OKPLAN_SKEW_FACTOR``, else 5; ``ValueError`` below 1.

    >>> skew_factor(None) > 1, skew_factor("3")
    (True, 3.0)
    """
    raw = option if option is not None else os.environ.get("OKPLAN_SKEW_FACTOR") or DEFAULT_SKEW_FACTOR
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not value >= 1:
        raise ValueError(f"skew_factor (OKPLAN_SKEW_FACTOR) must be a number >= 1 such as 5; got {raw!r}")
    return value


def skew_threshold(option: int | str | None) -> int:
    """``Context(skew_threshold=...)``, else ``OKPLAN_SKEW_THRESHOLD``, else 1 MB (bytes or ``"256MB"``).

    >>> skew_threshold("2MB")
    2097152
    """
    from .adaptive import parse_bytes

    if option is not None:
        return parse_bytes(option, "skew_threshold")
    env = os.environ.get("OKPLAN_SKEW_THRESHOLD")
    return parse_bytes(env, "OKPLAN_SKEW_THRESHOLD") if env not in (None, "") else DEFAULT_SKEW_THRESHOLD


@dataclass(frozen=True)
class Settings:
    broadcast_threshold: int
    skew_factor: float = DEFAULT_SKEW_FACTOR
    skew_threshold: int = DEFAULT_SKEW_THRESHOLD


@dataclass(frozen=True)
class MapOutput:
    """A shuffle whose map stage ran first: where the executor keeps it and what each reduce partition
    holds."""

    keep: Keep
    records: tuple[int, ...]
    bytes: tuple[int, ...]

    @property
    def maps(self) -> int:
        return self.keep[2]


class StageRunner(Protocol):
    """What ``replan`` needs from the session: running map stages first, reading a kept output back."""

    def run_maps(self, shuffles: list[tuple[ShuffleSlot, L.Node]],
                 done: dict[ShuffleSlot, MapOutput]) -> dict[ShuffleSlot, MapOutput]:
        """Run the map stages of ``shuffles`` (each a slot and a ``Shuffle`` node writing it, read by
        nothing), reading the ``done`` ones kept, and keep their outputs pinned."""
        ...

    def read_back(self, reader: L.Node, output: MapOutput) -> list[list]:
        """Every reduce partition of a kept output, read by ``reader`` (no map task runs)."""
        ...


def reader_of(node: L.Node, pos: int) -> L.Node:
    """A ``Shuffle`` that writes what the slot ``(node, pos)`` writes: the node itself for a shuffle;
    for a join's or cogroup's input, a plain shuffle of that input by the join's partitioner.

    >>> pairs = ctx.parallelize([(1, 2)], 2)
    >>> reader_of(pairs.cogroup(pairs, 3)._node, 1).details()
    'cogroup, hash(3)'
    """
    if pos < 0:
        return node
    kind = node.how if isinstance(node, L.HashJoin) else "cogroup"
    return L.Shuffle(inputs=(node.inputs[pos],), partitioner_=node.partitioner_, kind=kind,
                     label=node.label, callsite=node.callsite)


def slots_of(node: L.Node) -> list[ShuffleSlot]:
    """The shuffles ``node`` reads (none when it reads its inputs in place).

    >>> node = ctx.parallelize([(1, 2)]).reduceByKey(add)._node
    >>> slots_of(node) == [(node.nid, -1)]
    True
    """
    if isinstance(node, L.Shuffle):
        return [] if node.elided else [(node.nid, -1)]
    if isinstance(node, (L.CoGroup, L.HashJoin)):
        return [(node.nid, pos) for pos in range(len(node.inputs)) if pos not in node.elided]
    return []


def _map_input(node: L.Node, pos: int) -> L.Node:
    return node.inputs[0] if pos < 0 else node.inputs[pos]


def live_nodes(root: L.Node, barriers: set[ShuffleSlot] | frozenset) -> list[L.Node]:
    """The nodes whose stages would run: everything reachable from ``root`` except below a shuffle
    whose output is kept (``barriers``), inputs before their readers.

    >>> node = ctx.parallelize([(1, 2)]).reduceByKey(add)._node
    >>> len(live_nodes(node, set())), len(live_nodes(node, {(node.nid, -1)}))
    (2, 1)
    """
    def followed(node: L.Node) -> list[L.Node]:
        cut = {pos for nid, pos in barriers if nid == node.nid} if slots_of(node) else set()
        return [child for pos, child in enumerate(node.inputs)
                if (-1 if isinstance(node, L.Shuffle) else pos) not in cut]

    return postorder(root, followed)


def _persists(nodes: list[L.Node]) -> set[int]:
    return {id(n) for n in nodes if isinstance(n, L.Persist)}


def _even(n: int, k: int) -> list[tuple[int, int]]:
    """``k`` contiguous runs of ``range(n)``, as even as can be."""
    return [(i * n // k, (i + 1) * n // k) for i in range(k)]


@dataclass
class _Candidate:
    node: L.Node
    multiset: bool      # its output's partitioning and order cannot show
    boundaries: bool    # where its partitions begin and end cannot show


def replan(plan: LogicalPlan, order_free: bool, concatenates: bool, settings: Settings, runner: StageRunner,
           reused: frozenset[ShuffleSlot] = frozenset(), known: dict[ShuffleSlot, MapOutput] | None = None
           ) -> tuple[LogicalPlan, list[Decision], dict[ShuffleSlot, MapOutput]]:
    """``plan`` with its hidden reduce stages re-planned from their map stages' measured sizes; the
    decisions; the shuffles that ran first (the job reads them kept). ``reused``: slots an earlier job's
    kept output feeds whose sizes are not known (nothing below them runs); ``known``: those whose sizes
    are (an earlier job measured them). The session calls it for every job it runs:

    >>> words = ctx.parallelize(["a b", "b"], 2).flatMap(str.split).map(lambda w: (w, 1))
    >>> sorted(words.reduceByKey(add, 20).collect()), ctx.lastJobMetrics().notes[0].split(",")[0]
    ([('a', 1), ('b', 2)], 'adaptive: reduceByKey #...: 20 reduce partitions read by 1 task')
    """
    decisions: list[Decision] = []
    done: dict[ShuffleSlot, MapOutput] = dict(known or {})
    if not (order_free or concatenates):
        return plan, decisions, done
    # nids nothing more is decided for; to start with, what a plan-time decision coalesced already
    final: set[int] = {i.nid for n in plan.nodes() if isinstance(n, L.Coalesce) for i in n.inputs}
    tried_broadcast: set[int] = set()
    for _ in range(_MAX_ROUNDS):
        barriers = set(done) | set(reused)
        live = live_nodes(plan.root, barriers)
        multiset = hidden_nodes(plan, order_free)
        bounds = boundaries_hidden(plan, order_free, concatenates)
        cands = {}
        for n in live:
            c = _candidate(n, multiset, bounds, reused)
            if c is not None and n.nid not in final:
                cands[n.nid] = c
        if not cands:
            break
        # lowest first: a candidate whose map side holds no other candidate
        lowest = []
        for c in cands.values():
            below = live_nodes_below(c.node, barriers)
            if not any(o.nid in cands and o.nid != c.node.nid for o in below):
                lowest.append(c)
        wanted: list[tuple[ShuffleSlot, L.Node]] = []
        trying: dict[int, ShuffleSlot] = {}   # joins whose build side is known (or runs alone) this round
        for c in lowest:
            pending = [s for s in slots_of(c.node) if s not in done]
            build = _broadcast_side(c, settings) if c.node.nid not in tried_broadcast else None
            tried_broadcast.add(c.node.nid)
            build_slot = (c.node.nid, build)
            if build is not None and build_slot in done and pending:
                pending = []  # an earlier job measured the build side: decide before the other side runs
                trying[c.node.nid] = build_slot
            elif build is not None and len(pending) > 1:
                first = [build_slot]
                if _runs_alone(plan, first, barriers):
                    pending = first  # the other side's map stage waits: it need not run if this one is small
                    trying[c.node.nid] = build_slot
            if pending and not _runs_alone(plan, pending, barriers):
                final.add(c.node.nid)  # part of its map side is computed elsewhere in the job too
                continue
            wanted += [(s, reader_of(c.node, s[1])) for s in pending]
        if wanted:
            done.update(runner.run_maps(wanted, done))
        decided = {c.node.nid: c for c in lowest if c.node.nid not in final and any(s in done for s in slots_of(c.node))}
        if not decided and not wanted:
            break

        def decide(node: L.Node, original: L.Node) -> L.Node | None:
            c = decided.get(node.nid)
            if c is None or node.nid in final:
                return None
            if all(s in done for s in slots_of(node)):
                final.add(node.nid)
                return _after_maps(node, c, done, settings, decisions)
            if node.nid in trying:
                return _broadcast(node, trying[node.nid], done, settings, runner, decisions, final)
            return None

        plan = plan.transform(decide, with_original=True)
    return plan, decisions, done


def live_nodes_below(node: L.Node, barriers: set[ShuffleSlot]) -> list[L.Node]:
    """The nodes whose stages would run to write the shuffles ``node`` reads.

    >>> [n.op_name for n in live_nodes_below(ctx.parallelize([(1, 2)]).reduceByKey(add)._node, set())]
    ['Parallelize']
    """
    out: list[L.Node] = []
    for slot in slots_of(node):
        if slot not in barriers:
            out += live_nodes(_map_input(node, slot[1]), barriers)
    return out


def _candidate(n: L.Node, multiset: set[int], bounds: set[int], reused: frozenset[ShuffleSlot]) -> _Candidate | None:
    slots = slots_of(n)
    if not slots or any(s in reused for s in slots):
        return None
    if isinstance(n, L.HashJoin) and n.splits:
        return None
    c = _Candidate(n, id(n) in multiset, id(n) in bounds)
    if not (c.multiset or c.boundaries):
        return None
    if isinstance(n, L.HashJoin) and not n.elided:
        return c
    return c if c.boundaries and n.num_partitions >= MIN_COALESCE_PARTITIONS else None


def _runs_alone(plan: LogicalPlan, slots: list[ShuffleSlot], barriers: set[ShuffleSlot]) -> bool:
    """True when running the map stages of ``slots`` first computes nothing the rest of the job
    computes again: no ``Persist`` below them is also reachable another way."""
    if not slots:
        return False
    by_nid = {n.nid: n for n in live_nodes(plan.root, barriers) if slots_of(n)}
    under: set[int] = set()
    for nid, pos in slots:
        node = by_nid.get(nid)
        if node is None:
            return False
        under |= _persists(live_nodes(_map_input(node, pos), barriers))
    if not under:
        return True
    return not (under & _persists(live_nodes(plan.root, barriers | set(slots))))


def _broadcast_side(c: _Candidate, settings: Settings) -> int | None:
    """The join input to run first and broadcast if small: one whose size the plan cannot tell (the
    plan-time decision took the others), of a join whose partitioning and order cannot show."""
    node = c.node
    if not (isinstance(node, L.HashJoin) and c.multiset and settings.broadcast_threshold > 0) or node.elided:
        return None
    sides = {"join": (1, 0), "leftOuterJoin": (1,), "rightOuterJoin": (0,)}.get(node.how, ())
    max_records = settings.broadcast_threshold // 8
    best = None
    for side in sides:
        bound = records_at_most(node.inputs[side])
        if bound is not None and bound <= max_records:
            continue  # decided at plan time already
        rank = math.inf if bound is None else bound
        if best is None or rank < best[1]:
            best = (side, rank)
    return None if best is None else best[0]


def _broadcast(node: L.Node, slot: ShuffleSlot, done: dict[ShuffleSlot, MapOutput], settings: Settings,
               runner: StageRunner, decisions: list[Decision], final: set[int]) -> L.Node | None:
    """Once the build side's (``slot``) map stage ran alone (or an earlier job's did): a broadcast join
    if it is small, else nothing (the other side's map stage runs next round)."""
    assert isinstance(node, L.HashJoin)
    out = done[slot]
    side = slot[1]
    name = "left" if side == 0 else "right"
    records, size = sum(out.records), sum(out.bytes)
    figures = f"{name} side {records:,} records / {human_bytes(size)} measured"
    if size > settings.broadcast_threshold:
        decisions.append(Decision(f"{node.how} #{node.nid}", f"shuffle join kept, {figures} over the broadcast "
                                                             f"threshold {human_bytes(settings.broadcast_threshold)}"))
        return None
    final.add(node.nid)
    parts = runner.read_back(reader_of(node, side), out)
    decisions.append(Decision(f"{node.how} #{node.nid}", f"broadcast join, {figures} after its map stage "
                                                         f"(threshold {human_bytes(settings.broadcast_threshold)})"))
    small = node.inputs[side]
    build = L.Source(slices=([x for p in parts for x in p],), label=small.label, callsite=small.callsite)
    return L.BroadcastJoin(inputs=(node.inputs[1 - side], build), how=node.how, build_left=side == 0,
                           reason=figures, label=node.label, callsite=node.callsite, nid=node.nid)


def _after_maps(node: L.Node, c: _Candidate, done: dict[ShuffleSlot, MapOutput], settings: Settings,
                decisions: list[Decision]) -> L.Node | None:
    """Skew splitting (joins) and coalescing from the measured sizes of every shuffle ``node`` reads."""
    outs = [(s[1], done[s]) for s in slots_of(node)]
    n = node.partitioner_.num_partitions  # type: ignore[attr-defined]
    name = f"{node.how if isinstance(node, L.HashJoin) else node.kind if isinstance(node, L.Shuffle) else 'cogroup'}" \
           f" #{node.nid}"
    # units: (reduce partition, per side its map range); their records and bytes
    split: dict[int, dict[int, int]] = {}
    if isinstance(node, L.HashJoin) and not node.elided:
        split = _skewed(node, c, dict(outs), settings, decisions, name)
    units: list[tuple[int, ...]] = []
    sizes: list[tuple[float, float]] = []
    for p in range(n):
        ways = [[(0, out.maps)] if p not in split.get(pos, {}) else _even(out.maps, split[pos][p])
                for pos, out in outs]
        for combo in _product(ways):
            unit = (p,) + tuple(x for rng in combo for x in rng)
            units.append(unit)
            recs = byts = 0.0
            for (pos, out), (lo, hi) in zip(outs, combo):
                share = (hi - lo) / out.maps if out.maps else 1.0
                recs += out.records[p] * share if p < len(out.records) else 0
                byts += out.bytes[p] * share if p < len(out.bytes) else 0
            sizes.append((recs, byts))
    alone = {i for i, u in enumerate(units) if split and _is_split(u, outs)}
    result = node
    if split:
        # both sides' map ranges per unit, in the join's (left, right) order
        full = tuple((u[0], u[1], u[2], u[3], u[4]) for u in units)
        result = node.replace(splits=full)
    groups = _coalesced(sizes, alone) if c.boundaries else [(i,) for i in range(len(units))]
    if len(groups) < len(units):
        if not split:
            total_r, total_b = sum(r for r, _ in sizes), sum(b for _, b in sizes)
            decisions.append(Decision(name, f"{n} reduce partitions read by {len(groups)} task"
                                            f"{'s' if len(groups) != 1 else ''}, by measured sizes "
                                            f"({int(total_r):,} records / {human_bytes(int(total_b))})"))
        else:
            decisions.append(Decision(name, f"{len(units)} tasks coalesced into {len(groups)} by measured sizes"))
        return L.Coalesce(inputs=(result,), target=len(groups), ranges=tuple(groups), label=node.label,
                          callsite=node.callsite)
    return None if result is node else result


def _product(ways: list[list[tuple[int, int]]]) -> list[tuple[tuple[int, int], ...]]:
    out: list[tuple[tuple[int, int], ...]] = [()]
    for w in ways:
        out = [o + (r,) for o in out for r in w]
    return out


def _is_split(unit: tuple[int, ...], outs: list[tuple[int, MapOutput]]) -> bool:
    ranges = [unit[1 + 2 * i: 3 + 2 * i] for i in range(len(outs))]
    return any(tuple(r) != (0, out.maps) for r, (_, out) in zip(ranges, outs))


def _skewed(node: L.HashJoin, c: _Candidate, outs: dict[int, MapOutput], settings: Settings,
            decisions: list[Decision], name: str) -> dict[int, dict[int, int]]:
    """Per join input, the skewed reduce partitions and how many tasks each is split into."""
    # the streamed (left) side splits without changing the order; the built (right) side needs an
    # order-free action; an outer side's unmatched records must meet the whole other side
    allowed = {"join": {0: c.boundaries, 1: c.multiset}, "leftOuterJoin": {0: c.boundaries},
               "rightOuterJoin": {1: c.multiset}}.get(node.how, {})
    split: dict[int, dict[int, int]] = {}
    for pos, ok in allowed.items():
        out = outs.get(pos)
        if not ok or out is None or out.maps < 2 or not any(out.bytes):
            continue
        sizes = out.bytes
        median = statistics.median(sizes)
        skewed = [p for p, b in enumerate(sizes)
                  if b > settings.skew_factor * median and b > settings.skew_threshold]
        if not skewed:
            continue
        rest = [b for p, b in enumerate(sizes) if p not in skewed]
        target = max(sum(rest) / len(rest) if rest else 0, settings.skew_threshold / 2, 1)
        for p in skewed:
            k = min(out.maps, max(2, math.ceil(sizes[p] / target)))
            split.setdefault(pos, {})[p] = k
            ratio = sizes[p] / median if median else math.inf
            side = "left" if pos == 0 else "right"
            records = out.records[p] if p < len(out.records) else 0
            decisions.append(Decision(name, f"split partition {p} ({records:,} records, "
                                            f"{human_bytes(sizes[p])}, {ratio:.1f}x median) into {k} tasks "
                                            f"({side} side)"))
    return split


def _coalesced(sizes: list[tuple[float, float]], alone: set[int]) -> list[tuple[int, ...]]:
    """Contiguous runs of units within ``COALESCE_RECORDS`` records and ``ADVISORY_BYTES`` each; units
    in ``alone`` (slices of a split partition) stay tasks of their own."""
    groups: list[tuple[int, ...]] = []
    run: list[int] = []
    recs = byts = 0.0
    for i, (r, b) in enumerate(sizes):
        if i in alone:
            if run:
                groups.append(tuple(run))
                run, recs, byts = [], 0.0, 0.0
            groups.append((i,))
            continue
        if run and (recs + r > COALESCE_RECORDS or byts + b > ADVISORY_BYTES):
            groups.append(tuple(run))
            run, recs, byts = [], 0.0, 0.0
        run.append(i)
        recs += r
        byts += b
    if run:
        groups.append(tuple(run))
    return groups


