"""Dead branches: inputs with no partitions contribute nothing, so they are cut from a union (and a
union left with one input is that input). A plan whose root has no partitions runs no executor at all
(the Context answers it without submitting a job).

Before::

    Union
    ├─ Map [f]
    │  └─ Parallelize (3 parts)
    └─ Map [g]
       └─ EmptyRDD (0 parts)

After::

    Map [f]
    └─ Parallelize (3 parts)
"""

from __future__ import annotations

from ..nodes import Node, Union
from ..plan import LogicalPlan
from ..rule import RuleLog


def cull_empty(plan: LogicalPlan, log: RuleLog) -> LogicalPlan:
    def rewrite(node: Node) -> Node | None:
        if not isinstance(node, Union):
            return None
        alive = tuple(i for i in node.inputs if i.num_partitions > 0)
        if len(alive) == len(node.inputs) or not alive:
            return None
        log.fired(node, f"dropped {len(node.inputs) - len(alive)} input(s) with no partitions")
        return alive[0] if len(alive) == 1 else node.replace(inputs=alive)

    return plan.transform(rewrite)
