"""Join strategy: a join whose cogroup feeds nothing else becomes a hash join. The cogroup groups both
sides into per-key lists and then forms each key's product; a hash join keeps only the right side in a
dict and streams the left side past it, emitting pairs at once.

Before::

    Join
    └─ CoGroup [2 inputs, hash(8)]
       ├─ Map [left_pair]
       └─ Map [right_pair]

After::

    HashJoin [join, hash(8), build right]
    ├─ Map [left_pair]
    └─ Map [right_pair]

Shuffle elision carries over: an input the cogroup read in place, the hash join reads in place too.
Runs after ``elide_shuffles`` has looked at the cogroup.
"""

from __future__ import annotations

from ..nodes import CoGroup, HashJoin, Narrow, Node
from ..plan import LogicalPlan
from ..rule import RuleLog
from ..traits import traits_of


def hash_join(plan: LogicalPlan, log: RuleLog) -> LogicalPlan:
    reads = plan.read_counts()

    def rewrite(node: Node, original: Node) -> Node | None:
        if not (isinstance(node, Narrow) and traits_of(node).join):
            return None
        cogroup = node.input
        if not isinstance(cogroup, CoGroup) or len(cogroup.inputs) != 2 or cogroup.presence_only:
            return None
        if reads.get(id(original.input), 0) > 1:
            return None
        log.fired(node, f"{node.kind} as a hash join: right side in a dict, left side streamed")
        return HashJoin(inputs=cogroup.inputs, how=node.kind, partitioner_=cogroup.partitioner_,
                        elided=cogroup.elided, label=node.label, callsite=node.callsite, nid=node.nid)

    return plan.transform(rewrite, with_original=True)
