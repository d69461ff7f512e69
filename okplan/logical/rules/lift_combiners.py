"""Combiner lifting: aggregate within each map partition before an aggregating shuffle, so the
shuffle moves one record per key and partition instead of one per input record.

Before::

    Shuffle [reduceByKey, hash(4), add]
    └─ Map <lambda>
       └─ Range

After::

    Shuffle [reduceByKey, hash(4), merge add]
    └─ PartialAggregate [add]
       └─ Map <lambda>
          └─ Range

Covers every aggregating shuffle (reduceByKey, foldByKey, aggregateByKey, combineByKey, distinct,
and countByKey/countByValue, which count per partition already). Not applied to ``groupByKey`` (its
lists are as big either way) nor to an elided shuffle (it aggregates in place already).

The inputs of a ``CoGroup`` whose values do not matter (``presence_only``: the right side of
``subtract``/``subtractByKey``, both sides of ``intersection``) get a map-side de-duplication.
"""

from __future__ import annotations

from ..aggregators import keep_first
from ..nodes import CoGroup, Node, PartialAggregate, Shuffle
from ..plan import LogicalPlan
from ..rule import RuleLog


def lift_combiners(plan: LogicalPlan, log: RuleLog) -> LogicalPlan:
    def rewrite(node: Node) -> Node | None:
        if isinstance(node, Shuffle):
            agg = node.aggregator
            if node.combined or node.elided or agg is None or not agg.combinable:
                return None
            log.fired(node, f"partial {agg.name} in the map stage before {node.kind}")
            partial = PartialAggregate(inputs=(node.input,), aggregator=agg, for_kind=node.kind,
                                       callsite=node.callsite)
            return node.replace(inputs=(partial,), combined=True)
        if isinstance(node, CoGroup) and node.presence_only:
            todo = [pos for pos in sorted(node.presence_only - node.elided)
                    if not isinstance(node.inputs[pos], PartialAggregate)]
            if not todo:
                return None
            inputs = list(node.inputs)
            for pos in todo:
                inputs[pos] = PartialAggregate(inputs=(inputs[pos],), aggregator=keep_first(), for_kind="cogroup",
                                               callsite=node.callsite)
            log.fired(node, f"de-duplicate keys of input(s) {todo} before the shuffle (only presence matters)")
            return node.replace(inputs=tuple(inputs))
        return None

    return plan.transform(rewrite)
