"""Range bounds of sorts, sampled when a job runs rather than when ``sortByKey`` is called.

A sort's ``Shuffle`` carries a ``RangePartitioner`` without bounds. Before the job, for each such sort
(innermost first): its input is materialised under a temporary cache while a sketch action returns each
partition's size and a sample of its keys (one job); the bounds come from those sketches; and the sort
reads its input from that cache. So the input is computed once, with any executor, and nothing runs
before the action. The temporary caches are dropped when the job ends.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Callable

from .actions import PartitionAction
from .logical import nodes as L
from .logical.nodes import fresh_id
from .logical.partitioners import RangePartitioner
from .logical.plan import LogicalPlan

#: runs a plan rooted at a node with an action; returns the action's per-partition results
RunPlan = Callable[[L.Node, PartitionAction], list]
#: a partition's sketch -> the records it read
_seen = itemgetter(0)


def needs_bounds(node: L.Node) -> bool:
    return (isinstance(node, L.Shuffle) and isinstance(node.partitioner_, RangePartitioner)
            and node.partitioner_.bounds is None)


def resolve_sort_bounds(plan: LogicalPlan, run: RunPlan, skip: frozenset[int] = frozenset()
                        ) -> tuple[LogicalPlan, list[str]]:
    """``plan`` with every sort's bounds sampled (running one sketch job per sort), and the ids of
    the temporary caches to drop after the job. Sorts whose node id is in ``skip`` are left open (a
    shuffle reused from an earlier job already has its buckets)."""
    temporary: list[str] = []

    def resolve(node: L.Node) -> L.Node | None:
        if not needs_bounds(node) or node.nid in skip:
            return None
        source = node.input
        cache_id = f"sort-{fresh_id()}"
        temporary.append(cache_id)
        persisted = L.Persist(inputs=(source,), cache_id=cache_id, scope="context", label=source.label,
                              callsite=node.callsite)
        partitioner: RangePartitioner = node.partitioner_  # type: ignore[assignment]
        # a sketch says how many records it read: the task need not count them again
        sketches = run(persisted, PartitionAction(partitioner.sketcher(source.num_partitions), "sortByKey sample",
                                                  counts=_seen))
        cached = L.CachedRead(cache_id=cache_id, partitions=source.num_partitions, partitioner_=source.partitioner,
                              lineage=source, label=source.label, callsite=source.callsite)
        return node.replace(inputs=(cached,), partitioner_=partitioner.with_bounds_from(sketches))

    if not any(needs_bounds(n) and n.nid not in skip for n in plan.nodes()):
        return plan, temporary
    return plan.transform(resolve), temporary
