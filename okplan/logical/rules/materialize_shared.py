"""Compute a dataset that two branches of one job read only once: materialise it for the job.

Before (``a`` feeds both sides of a join: without the rule its map runs twice)::

    CoGroup
    ├─ #2 Map [expensive]  [shared by 2 consumers]
    │  └─ #1 Parallelize
    └─ #5 MapValues
       └─ #2 Map (shared)

After::

    CoGroup
    ├─ #9 Persist [job job-2]  [shared by 2 consumers]
    │  └─ #2 Map [expensive]
    │     └─ #1 Parallelize
    └─ #5 MapValues
       └─ #9 Persist (shared)

Leaves that cost nothing to read again (sources, ranges, files, cached data) and nodes already
materialised are left alone. The job-scoped blocks are dropped when the job ends.
"""

from __future__ import annotations

from ..nodes import CachedRead, FileSource, Node, Persist, RangeSource, Source, fresh_id
from ..plan import LogicalPlan
from ..rule import RuleLog

#: a file source is read again rather than kept: re-reading costs what keeping it would (Spark re-reads too)
_CHEAP = (Source, RangeSource, FileSource, CachedRead, Persist)


def materialize_shared(plan: LogicalPlan, log: RuleLog) -> LogicalPlan:
    reads = plan.read_counts()

    def rewrite(node: Node, original: Node) -> Node | None:
        count = reads.get(id(original), 0)
        if isinstance(node, _CHEAP) or count < 2:
            return None
        log.fired(node, f"read {count} times in this job: computed once and kept for the job")
        # a fresh id: two plans' shared nodes must never share blocks
        return Persist(inputs=(node,), cache_id=f"job-{fresh_id()}", scope="job", label=node.label,
                       callsite=node.callsite)

    return plan.transform(rewrite, with_original=True)
