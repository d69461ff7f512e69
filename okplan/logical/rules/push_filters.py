"""Filter pushdown: move a ``filter`` below operators it commutes with, so fewer records are
shuffled, sorted, de-duplicated or joined. What an operator does to records comes from its declared
traits (``okplan/logical/traits.py``):

- below an operator that only moves or reorders records (``union``, ``coalesce``, a shuffle that does
  not aggregate: ``partitionBy``, ``repartition``, ``sortBy``/``sortByKey`` and the per-partition sort),
  into each of its inputs;
- below ``keys``/``values``, the predicate then reading ``record[0]``/``record[1]``;
- for a predicate that reads only the key (``lambda kv: kv[0] < 8``, proven from its bytecode, or one
  derived from ``keys()``): below what works key by key — joins, cogroup, ``subtractByKey``,
  ``distinct``'s aggregation — into each input;
- for a predicate that reads only the item a ``keyBy`` or ``distinct`` wraps: below the wrapping.

Never moved below an operator that calls a user function (``map``, ``mapValues``, ``keyBy(f)``,
``reduceByKey(f)``, ``partitionBy(n, myhash)``...): that would skip calls PySpark makes. Never moved
below ``cache()`` (the filter reads the cached data instead of recomputing it), below
``zipWithIndex`` (the index depends on the records before), nor below a node another branch also
reads (that would compute it twice).

Before (``ds.sortBy(f).filter(p)``)::

    Filter [p]
    └─ Values
       └─ SortPartition
          └─ Shuffle [sortByKey, range(4)]
             └─ KeyBy [f]
                └─ Parallelize

After (``p`` now reads the value of the pairs ``keyBy`` made)::

    Values
    └─ SortPartition
       └─ Shuffle [sortByKey, range(4)]
          └─ Filter [value: p]
             └─ KeyBy [f]
                └─ Parallelize
"""

from __future__ import annotations

from typing import Any, Callable

from .. import narrow
from ..nodes import Narrow, Node
from ..plan import LogicalPlan
from ..predicates import ON_ITEM, item_predicate, reads_item
from ..rule import RuleLog
from ..traits import traits_of, user_functions


def _filter(child: Node, p: Callable[[Any], bool], like: Narrow, keep_id: bool = True) -> Narrow:
    """The filter ``like`` moved onto ``child``; it keeps its ``#id`` so plans show one filter moving."""
    extra = {"nid": like.nid} if keep_id else {}
    return Narrow(inputs=(child,), kind="filter", func=p, fn=narrow.filter_fn(p), preserves_partitioning=True,
                  label=like.label, callsite=like.callsite, **extra)


def push_filters(plan: LogicalPlan, log: RuleLog) -> LogicalPlan:
    reads = plan.read_counts()

    def rewrite(node: Node, original: Node) -> Node | None:
        if not (isinstance(node, Narrow) and node.kind == "filter"):
            return None
        child = node.input
        # the child as it was in this plan: moving a filter below a node others read too would
        # compute that node twice, once filtered and once not
        if reads.get(id(original.input), 0) > 1 or user_functions(child):
            return None
        moved = _push(node, child, node.func)
        if moved is not None:
            log.fired(node, f"filter moved below {child.op_name} #{child.nid}")
        return moved

    return plan.transform(rewrite, with_original=True)


def _push(f: Narrow, child: Node, p: Any) -> Node | None:
    """``child`` with the filter ``f`` (predicate ``p``) moved below it, or None where it must stay."""
    traits = traits_of(child)
    if not child.inputs:
        return None
    if traits.permutes or traits.per_key and reads_item(p) == 0:
        keep_id = len(child.inputs) == 1
        return child.replace(inputs=tuple(_filter(i, p, f, keep_id) for i in child.inputs))
    if traits.item is not None:
        return child.replace(inputs=(_filter(child.input, ON_ITEM[traits.item](p), f),))
    if traits.wraps_at is not None and reads_item(p) == traits.wraps_at:
        return child.replace(inputs=(_filter(child.input, item_predicate(p, traits.wraps_at), f),))
    return None
