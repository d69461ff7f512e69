"""Filter pushdown: move a ``filter`` below operators it commutes with, so fewer records are
shuffled, sorted or de-duplicated.

Always valid, and applied: below ``union`` (into each branch), ``coalesce``, a shuffle that does not
aggregate (``partitionBy``, ``repartition``, ``sortBy``/``sortByKey`` and the per-partition sort),
``keys``/``values`` (the predicate then reads ``record[0]``/``record[1]``), ``keyBy`` (a value
predicate is a predicate on the original record), and — for predicates on the key only — below
``distinct``'s aggregation, ``mapValues``, ``flatMapValues``, joins and cogroups.

Never moved below ``cache()``: the filter reads the cached data instead of recomputing it. Never
moved below a node another branch also reads (that would compute it twice).

Before (``ds.sortBy(f).filter(p)``)::

    Filter [p]
    └─ Values
       └─ SortPartition
          └─ Shuffle [sortByKey, range(4)]
             └─ KeyBy [f]
                └─ Parallelize

After::

    Values
    └─ SortPartition
       └─ Shuffle [sortByKey, range(4)]
          └─ KeyBy [f]
             └─ Filter [p]
                └─ Parallelize
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from .. import narrow
from ..nodes import CoGroup, Coalesce, Narrow, Node, PartialAggregate, Shuffle, Union
from ..plan import LogicalPlan
from ..predicates import OnKey, OnValue

if TYPE_CHECKING:
    from ..optimizer import RuleLog

#: narrow kinds that keep each record as it is (only reorder or pass it)
_KEEP_RECORDS = {"sortPartition"}
#: narrow kinds that keep each pair's key (a key predicate commutes with them)
_KEEP_KEYS = {"mapValues", "flatMapValues", "join", "leftOuterJoin", "rightOuterJoin", "fullOuterJoin",
              "subtractByKey"}
#: narrow kinds that make ``(something, x)`` from a record ``x``
_WRAP_AS_VALUE = {"keyBy", "spread"}
#: narrow kinds that make ``(x, something)`` from a record ``x``
_WRAP_AS_KEY = {"pairWithNone", "pairWithTrue"}


def _filter(child: Node, p: Callable[[Any], bool], like: Narrow, keep_id: bool = True) -> Narrow:
    """The filter ``like`` moved onto ``child``; it keeps its ``#id`` so plans show one filter moving."""
    extra = {"nid": like.nid} if keep_id else {}
    return Narrow(inputs=(child,), kind="filter", func=p, fn=narrow.filter_fn(p), preserves_partitioning=True,
                  label=like.label, callsite=like.callsite, **extra)


def push_filters(plan: LogicalPlan, log: "RuleLog") -> LogicalPlan:
    reads = plan.read_counts()

    def rewrite(node: Node, original: Node) -> Node | None:
        if not (isinstance(node, Narrow) and node.kind == "filter"):
            return None
        child, p = node.input, node.func
        # the child as it was in this plan: moving a filter below a node others read too would
        # compute that node twice, once filtered and once not
        if reads.get(id(original.input), 0) > 1:
            return None
        on_key = isinstance(p, OnKey)
        moved = _push(node, child, p, on_key)
        if moved is not None:
            log.fired(node, f"filter moved below {child.op_name} #{child.nid}")
        return moved

    return plan.transform(rewrite, with_original=True)


def _push(f: Narrow, child: Node, p: Any, on_key: bool) -> Node | None:
    if isinstance(child, Union):
        return child.replace(inputs=tuple(_filter(i, p, f, False) for i in child.inputs))
    if isinstance(child, Coalesce):
        return child.replace(inputs=(_filter(child.input, p, f),))
    if isinstance(child, Shuffle) and (child.aggregator is None or on_key):
        return child.replace(inputs=(_filter(child.input, p, f),))
    if isinstance(child, PartialAggregate) and on_key:
        return child.replace(inputs=(_filter(child.input, p, f),))
    if isinstance(child, CoGroup) and on_key:
        return child.replace(inputs=tuple(_filter(i, p, f, False) for i in child.inputs))
    if not isinstance(child, Narrow):
        return None
    kind = child.kind
    if kind in _KEEP_RECORDS or (on_key and kind in _KEEP_KEYS):
        return child.replace(inputs=(_filter(child.input, p, f),))
    if kind == "values":
        return child.replace(inputs=(_filter(child.input, OnValue(p), f),))
    if kind == "keys":
        return child.replace(inputs=(_filter(child.input, OnKey(p), f),))
    if kind in _WRAP_AS_VALUE and isinstance(p, OnValue):
        return child.replace(inputs=(_filter(child.input, p.p, f),))
    if kind in _WRAP_AS_KEY and on_key:
        return child.replace(inputs=(_filter(child.input, p.p, f),))
    return None
