"""Shuffle reuse: a finished shuffle's output is kept, and a later job whose plan holds the same shuffle
skips its map stages (as Spark skips the stages of a shuffle it already ran; its UI shows them skipped).

"The same shuffle" is decided on the optimized plan, structurally: the node reading the shuffle and
everything below it, compared by each node's ``key()`` and, for nodes the user built, by identity (the
node id). So two jobs on one dataset share its shuffle while a job on another dataset built alike does
not (PySpark would call its functions again), and a filter the optimizer moved below the shuffle in one
job makes it a different shuffle.

Kept outputs live as long as a dataset that can reach them (as Spark's ContextCleaner): each is tied by
a weak reference to the user's node that reads the shuffle (or to the job's dataset when a rule made
that node), and dropped from the executor when that node is garbage collected, or at ``ctx.stop()``.
An output the executor lost raises ``CacheLostError`` with its id; the session then plans again without
it, which computes the shuffle again.
"""

from __future__ import annotations

import itertools
import os
import weakref
from dataclasses import dataclass
from typing import Any, Hashable

from .logical import nodes as L
from .logical.plan import LogicalPlan
from .physical.planner import Keep, ShuffleSlot

_keep_ids = itertools.count(1)


def reuse_enabled(option: bool | None) -> bool:
    """``Context(reuse_shuffles=...)``, else ``OKPLAN_REUSE_SHUFFLES`` (on unless ``0``/``false``/``off``)."""
    if option is not None:
        return bool(option)
    return os.environ.get("OKPLAN_REUSE_SHUFFLES", "1").strip().lower() not in ("0", "false", "off", "no")


@dataclass(frozen=True)
class Kept:
    keep_id: str
    job: int
    maps: int = 0   # map outputs it has
    #: what each reduce partition holds, records and (estimated) bytes, as its map stage measured them
    #: (adaptive planning of a later job re-plans from them: ``okplan/query_stages.py``)
    records: tuple[int, ...] = ()
    bytes: tuple[int, ...] = ()


@dataclass(frozen=True)
class Planned:
    """One shuffle of a job: how to recognise it later, where its output is kept, which job made it."""

    slot: ShuffleSlot
    fingerprint: Hashable
    keep_id: str
    reused_from: int | None
    maps: int = 0
    records: tuple[int, ...] = ()
    bytes: tuple[int, ...] = ()


def shuffle_slots(plan: LogicalPlan) -> list[tuple[ShuffleSlot, L.Node]]:
    """Every shuffle of ``plan`` that writes buckets: its slot and the node reading it."""
    out = []
    for n in plan.nodes():
        if isinstance(n, L.Shuffle) and not n.elided:
            out.append(((n.nid, -1), n))
        elif isinstance(n, (L.CoGroup, L.HashJoin)):
            out += [((n.nid, pos), n) for pos in range(len(n.inputs)) if pos not in n.elided]
    return out


def user_nodes(root: L.Node) -> dict[int, L.Node]:
    """The nodes the user's datasets hold below ``root``, by id (no plan graph: nothing is rewritten)."""
    found: dict[int, L.Node] = {}
    todo = [root]
    while todo:
        n = todo.pop()
        if n.nid not in found:
            found[n.nid] = n
            todo.extend(n.inputs)
    return found


def fingerprint(consumer: L.Node, pos: int, user_nids: set[int]) -> Hashable | None:
    """What makes the shuffle at ``(consumer, pos)`` write what it writes; None when it cannot be
    told (a node's key holds something unhashable)."""
    memo: dict[int, Any] = {}

    def fp(n: L.Node) -> Any:
        found = memo.get(id(n))
        if found is None:
            found = memo[id(n)] = (n.nid if n.nid in user_nids else None, n.key(), tuple(fp(i) for i in n.inputs))
        return found

    below = fp(consumer.inputs[0] if pos < 0 else consumer.inputs[pos])
    result = (consumer.nid if consumer.nid in user_nids else None, consumer.key(), pos, below)
    try:
        hash(result)
    except TypeError:
        return None
    return result


class ShuffleReuse:
    """The kept shuffle outputs of one session."""

    def __init__(self, executor: Any, enabled: bool):
        self.executor = executor
        self.enabled = enabled and bool(getattr(executor, "keeps_shuffles", False))
        self._kept: dict[Hashable, Kept] = {}

    def plan(self, root: L.Node, optimized: LogicalPlan, lost: frozenset[str]) -> list[Planned]:
        """For each shuffle of ``optimized`` (planned for the user's ``root``): reuse a kept output, or
        keep this job's under a new id."""
        if not self.enabled:
            return []
        user_nids = set(user_nodes(root))
        planned = []
        for slot, consumer in shuffle_slots(optimized):
            fp = fingerprint(consumer, slot[1], user_nids)
            if fp is None:
                continue
            kept = self._kept.get(fp)
            if kept is not None and (kept.keep_id in lost or not self.executor.has_kept_shuffle(kept.keep_id)):
                self._release(fp, kept.keep_id)
                kept = None
            if kept is not None:
                planned.append(Planned(slot, fp, kept.keep_id, kept.job, kept.maps, kept.records, kept.bytes))
            else:
                planned.append(Planned(slot, fp, f"shuffle-{os.getpid()}-{next(_keep_ids)}", None))
        return planned

    @staticmethod
    def keep_map(planned: list[Planned]) -> dict[ShuffleSlot, Keep]:
        return {p.slot: (p.keep_id, p.reused_from, p.maps) for p in planned}

    def finished(self, job: int, root: L.Node, planned: list[Planned], maps: dict[str, int] | None = None,
                 sizes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None) -> None:
        """Remember the outputs job ``job`` kept (``maps``: keep id -> map outputs; ``sizes``: keep id ->
        records and bytes per reduce partition), each for as long as the user's node reading it lives."""
        if not planned:
            return
        by_nid = user_nodes(root)
        for p in planned:
            if p.reused_from is not None:
                continue
            if p.fingerprint in self._kept or not self.executor.has_kept_shuffle(p.keep_id):
                # a job of another thread kept it first, or the map stage did not finish (the job
                # failed or stopped early): what this job wrote of it goes
                self.executor.drop_kept_shuffle(p.keep_id)
                continue
            records, nbytes = (sizes or {}).get(p.keep_id, ((), ()))
            self._kept[p.fingerprint] = Kept(p.keep_id, job, (maps or {}).get(p.keep_id, 0), records, nbytes)
            release = weakref.finalize(by_nid.get(p.slot[0], root), self._release, p.fingerprint, p.keep_id)
            release.atexit = False  # nothing to free in a process that is ending

    def _release(self, fp: Hashable, keep_id: str) -> None:
        # runs from the garbage collector too: single dict operations only, no lock
        kept = self._kept.get(fp)
        if kept is not None and kept.keep_id == keep_id:
            self._kept.pop(fp, None)
        if not getattr(self.executor, "stopped", False):
            self.executor.drop_kept_shuffle(keep_id)

    def clear(self) -> None:
        """Forget every kept output (the executor drops them when it stops)."""
        self._kept.clear()

    def __len__(self) -> int:
        return len(self._kept)
