"""Merge structurally identical subplans: two nodes that compute the same thing (same kind, same
user function objects, same arguments, same — already merged — inputs) become one node, so the job
computes it once.

Before (``src.map(f)`` written twice)::

    Union
    ├─ #3 Map [f]
    │  └─ #1 Parallelize
    └─ #4 Map [f]
       └─ #1 Parallelize (shared)

After::

    Union
    ├─ #3 Map [f]
    │  └─ #1 Parallelize
    └─ #3 Map [f] (shared)

Functions compare by identity: two lambdas with the same text are two functions (they may close over
different values), so only truly identical work merges.
"""

from __future__ import annotations

from typing import Any

from ..nodes import Node
from ..plan import LogicalPlan
from ..rule import RuleLog


def merge_identical_subplans(plan: LogicalPlan, log: RuleLog) -> LogicalPlan:
    canonical: dict[Any, Node] = {}

    def rewrite(node: Node) -> Node | None:
        try:
            signature = (node.key(), tuple(id(i) for i in node.inputs))
            hash(signature)
        except TypeError:  # an unhashable argument: leave the node alone
            return None
        first = canonical.get(signature)
        if first is None:
            canonical[signature] = node
            return None
        if first is node:
            return None
        log.fired(node, f"same computation as #{first.nid}: computed once")
        return first

    return plan.transform(rewrite)
