"""How a by-key aggregation combines values: Spark's ``Aggregator`` triple."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True, eq=False)
class Aggregator:
    """``create_combiner(v) -> C``, ``merge_value(C, v) -> C``, ``merge_combiners(C, C) -> C``.

    ``name`` is what plans show; ``combinable`` is False for aggregations that gain nothing from a
    map-side combine (``groupByKey`` builds the same lists either way), so combiner lifting skips them.
    """

    create_combiner: Callable[[Any], Any]
    merge_value: Callable[[Any, Any], Any]
    merge_combiners: Callable[[Any, Any], Any]
    name: str
    combinable: bool = True
    #: the user functions, for error reports and for comparing two plans structurally
    funcs: tuple = ()


def _identity(v):
    return v


def reducing(func: Callable[[Any, Any], Any], name: str) -> Aggregator:
    """The aggregator of ``reduceByKey(func)``."""
    return Aggregator(_identity, func, func, name, True, (func,))


def _new_list(v):
    return [v]


def _append(acc, v):
    acc.append(v)
    return acc


def _extend(acc, other):
    acc.extend(other)
    return acc


def grouping() -> Aggregator:
    """The aggregator of ``groupByKey``: values in lists, never combined on the map side."""
    return Aggregator(_new_list, _append, _extend, "group", False, ())


def groups_values(agg: Aggregator | None) -> bool:
    """Whether ``agg`` collects each key's values in a list (``groupByKey``'s shape).

    >>> groups_values(grouping()), groups_values(reducing(max, "max"))
    (True, False)
    """
    return agg is not None and agg.create_combiner is _new_list and agg.merge_value is _append


def _first(a, _b):
    return a


def keep_first(name: str = "dedupe") -> Aggregator:
    """One value per key (the first seen): a de-duplication where only the keys matter."""
    return Aggregator(_identity, _first, _first, name, True, ())
