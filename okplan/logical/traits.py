"""What each operator does to records, declared once: the facts the rules and short cuts reason with,
instead of each matching operator names of its own.

``traits_of(node)`` describes a node; ``user_functions(node)`` lists the functions of the user it calls
(an optimization may skip work only where none would have been called, as PySpark would call them).

>>> traits_of(Narrow(inputs=(), kind="mapValues", fn=None)).per_key
True
>>> traits_of(Narrow(inputs=(), kind="filter", fn=None)).one_to_one
False
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .nodes import (CachedRead, Cartesian, Coalesce, CoGroup, HashJoin, Narrow, Node, PartialAggregate,
                    PartitionerAwareUnion, Persist, RangeSource, Shuffle, Source, Union)


class Shape(IntEnum):
    """What records are sure to be, weakest first: what an operator reads without failing, and what
    its output is known to be."""

    ANY = 0
    #: ``(key, value)`` pairs (indexing them cannot fail)
    PAIRS = 1
    #: pairs whose keys hash and compare without error (ints the engine made itself)
    KEYED = 2


@dataclass(frozen=True)
class Traits:
    """Facts about one operator. The defaults claim nothing, so an operator nobody described is left
    alone by every rule."""

    #: exactly one output record per input record (so record counts pass through)
    one_to_one: bool = False
    #: every output record is an input record, unchanged (only moved, reordered, dropped or repeated)
    keeps_records: bool = False
    #: works key by key: each output pair has the key of the input pairs it came from and depends on no
    #: other key's records (a filter on the key commutes with it)
    per_key: bool = False
    #: emits ``record[item]`` of every input pair (``keys``: 0, ``values``: 1)
    item: int | None = None
    #: emits a pair holding the input record at this position, the other item computed from that
    #: record alone (``keyBy``: 1, ``pairWithNone``: 0)
    wraps_at: int | None = None
    #: beyond calling user functions, cannot fail on records of shape ``reads``
    total: bool = False
    #: what it needs its input records to be
    reads: Shape = Shape.ANY
    #: what its output records are; None: what its inputs are (for ``keeps_records`` operators)
    gives: Shape | None = Shape.ANY
    #: forms each key's joined pairs from a two-input cogroup (join and the outer joins)
    join: bool = False

    @property
    def permutes(self) -> bool:
        """Outputs are exactly the input records, maybe moved or reordered: any filter commutes."""
        return self.keeps_records and self.one_to_one


_SAME = None
_MOVES = Traits(one_to_one=True, keeps_records=True, total=True, gives=_SAME)
_JOIN = Traits(per_key=True, reads=Shape.PAIRS, gives=Shape.PAIRS, join=True)

#: narrow operators by API name (``Narrow.kind``)
NARROW: dict[str, Traits] = {
    "map": Traits(one_to_one=True),
    "flatMap": Traits(),
    "mapPartitions": Traits(),
    "mapPartitionsWithIndex": Traits(),
    "glom": Traits(total=True),
    "filter": Traits(keeps_records=True, gives=_SAME),
    "sample": Traits(keeps_records=True, total=True, gives=_SAME),
    "mapValues": Traits(one_to_one=True, per_key=True, reads=Shape.PAIRS, gives=Shape.PAIRS),
    "flatMapValues": Traits(per_key=True, reads=Shape.PAIRS, gives=Shape.PAIRS),
    "keyBy": Traits(one_to_one=True, wraps_at=1, gives=Shape.PAIRS),
    "keys": Traits(one_to_one=True, item=0, total=True, reads=Shape.PAIRS),
    "values": Traits(one_to_one=True, item=1, total=True, reads=Shape.PAIRS),
    # the index depends on the record's position, so a filter must not move below these
    "zipWithIndex": Traits(one_to_one=True, total=True, gives=Shape.PAIRS),
    "zipWithUniqueId": Traits(one_to_one=True, total=True, gives=Shape.PAIRS),
    # internal steps of repartition, distinct/intersection, subtract and sorts
    "spread": Traits(one_to_one=True, wraps_at=1, total=True, gives=Shape.KEYED),
    "pairWithNone": Traits(one_to_one=True, wraps_at=0, total=True, gives=Shape.PAIRS),
    "pairWithTrue": Traits(one_to_one=True, wraps_at=0, total=True, gives=Shape.PAIRS),
    "sortPartition": Traits(one_to_one=True, keeps_records=True, reads=Shape.KEYED, gives=_SAME),
    "join": _JOIN,
    "leftOuterJoin": _JOIN,
    "rightOuterJoin": _JOIN,
    "fullOuterJoin": _JOIN,
    "subtractByKey": Traits(per_key=True, reads=Shape.PAIRS, gives=Shape.PAIRS),
}

_BY_KEY = Traits(per_key=True, reads=Shape.KEYED, gives=Shape.PAIRS)
#: the other operators, by node class
NODES: dict[type, Traits] = {
    Source: Traits(total=True),
    RangeSource: Traits(total=True),
    CachedRead: Traits(total=True, gives=_SAME),
    Union: _MOVES,
    PartitionerAwareUnion: _MOVES,
    Coalesce: _MOVES,
    PartialAggregate: _BY_KEY,
    CoGroup: _BY_KEY,
    HashJoin: _BY_KEY,
    Cartesian: Traits(total=True, gives=Shape.PAIRS),
    # keeps records, but a filter must read the cache, not move below it: not ``keeps_records``;
    # and filling a cache is work the user asked for: not ``total``
    Persist: Traits(one_to_one=True, gives=_SAME),
}
#: a shuffle that only moves records (partitionBy, repartition, sortByKey) / one that aggregates
_MOVING_SHUFFLE = Traits(one_to_one=True, keeps_records=True, total=True, reads=Shape.KEYED, gives=_SAME)


def traits_of(node: Node) -> Traits:
    """The declared traits of ``node``'s operator (nothing claimed for one nobody described)."""
    if isinstance(node, Narrow):
        return NARROW.get(node.kind, Traits())
    if isinstance(node, Shuffle):
        return _MOVING_SHUFFLE if node.aggregator is None else _BY_KEY
    for cls in type(node).__mro__:
        found = NODES.get(cls)
        if found is not None:
            return found
    return Traits()


def user_functions(node: Node) -> tuple:
    """The user's functions ``node`` calls on records: its own (``funcs()``) and its partitioner's
    function when that is not okplan's (``partitionBy(n, myhash)``, ``sortByKey(keyfunc=...)``).

    >>> pairs = ctx.parallelize([(1, 2)])
    >>> user_functions(pairs.partitionBy(2)._node), user_functions(pairs.partitionBy(2, hash)._node)
    ((), (<built-in function hash>,))
    """
    partitioner = getattr(node, "partitioner_", None)
    found = tuple(node.funcs())
    for attr in ("partition_func", "keyfunc"):
        fn = getattr(partitioner, attr, None)
        if fn is not None and not is_okplan_function(fn):
            found += (fn,)
    return found


def is_okplan_function(fn: Any) -> bool:
    """True for functions okplan itself defines (default partition and sort-key functions)."""
    module = getattr(fn, "__module__", None) or ""
    return module == "okplan" or module.startswith("okplan.")


def shape_of(node: Node) -> Shape:
    """What ``node``'s records are sure to be.

    >>> shape_of(ctx.parallelize([1]).repartition(2)._node.input), shape_of(ctx.parallelize([1])._node)
    (<Shape.KEYED: 2>, <Shape.ANY: 0>)
    """
    if isinstance(node, CachedRead):
        return shape_of(node.lineage) if node.lineage is not None else Shape.ANY
    gives = traits_of(node).gives
    if gives is not None:
        return gives
    return min((shape_of(i) for i in node.inputs), default=Shape.ANY)
