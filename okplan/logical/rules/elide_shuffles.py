"""Partitioner propagation and shuffle elision: a shuffle whose input is already partitioned by the
same partitioner (same kind, same function, same partition count) moves no data, so it becomes a
per-partition step (a narrow, one-to-one dependency) in the stage that produced its input.

Partitioners propagate through the nodes that keep keys where they are (``mapValues``,
``flatMapValues``, ``filter``, ``PartialAggregate``, a shuffle's output, ``cache``); ``map`` and
friends drop them unless ``preservesPartitioning=True``, as in PySpark.

Before::

    Shuffle [reduceByKey, hash(8), add]
    └─ MapValues
       └─ Shuffle [partitionBy, hash(8)]
          └─ Parallelize

After::

    Shuffle [reduceByKey, hash(8), add, ELIDED: input already partitioned]
    └─ MapValues
       └─ Shuffle [partitionBy, hash(8)]
          └─ Parallelize

For a ``CoGroup`` (join, cogroup, ...) each input is considered alone: an input already partitioned
like the output is read in place, the others are shuffled.
"""

from __future__ import annotations

from ..nodes import CoGroup, HashJoin, Node, Shuffle
from ..plan import LogicalPlan
from ..rule import RuleLog


def elide_shuffles(plan: LogicalPlan, log: RuleLog) -> LogicalPlan:
    def rewrite(node: Node) -> Node | None:
        if isinstance(node, Shuffle) and not node.elided and node.input.partitioner == node.partitioner_:
            log.fired(node, f"input #{node.input.nid} is already {node.partitioner_.describe()}: no shuffle")
            return node.replace(elided=True)
        if isinstance(node, (CoGroup, HashJoin)):
            same = frozenset(pos for pos, child in enumerate(node.inputs)
                             if child.partitioner == node.partitioner_) - node.elided
            if same:
                log.fired(node, f"input(s) {sorted(same)} already {node.partitioner_.describe()}: read in place")
                return node.replace(elided=node.elided | same)
        return None

    return plan.transform(rewrite)
