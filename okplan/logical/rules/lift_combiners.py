"""Combiner lifting: aggregate within each map partition before an aggregating shuffle, so the
shuffle moves one record per key and partition instead of one per input record.

Before::

    Shuffle reduceByKey, hash(4), add
    └─ Map <lambda>
       └─ Range

After::

    Shuffle reduceByKey, hash(4), merge add
    └─ PartialAggregate add
       └─ Map <lambda>
          └─ Range

Not applied to ``groupByKey`` (its aggregator is not combinable: lists are as big either way), nor to
a shuffle that was elided (it aggregates in place already).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..nodes import Node, PartialAggregate, Shuffle
from ..plan import LogicalPlan

if TYPE_CHECKING:
    from ..optimizer import RuleLog


def lift_combiners(plan: LogicalPlan, log: "RuleLog") -> LogicalPlan:
    def rewrite(node: Node) -> Node | None:
        if not isinstance(node, Shuffle) or node.combined or node.elided:
            return None
        agg = node.aggregator
        if agg is None or not agg.combinable:
            return None
        log.fired(node, f"partial {agg.name} in the map stage before {node.kind}")
        partial = PartialAggregate(inputs=(node.input,), aggregator=agg, callsite=node.callsite)
        return node.replace(inputs=(partial,), combined=True)

    return plan.transform(rewrite)
