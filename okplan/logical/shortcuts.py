"""Answers the plan already knows, so the Context can skip running tasks.

``known_count(node)``: the number of records when every node between the root and the sources keeps
one output record per input record (map, keyBy, mapValues, keys, values, zipWithIndex, sort, union,
coalesce, a non-aggregating shuffle) and the sources know their sizes. A filter, a flatMap or an
aggregation makes the count unknown: then the job runs. So does a ``cache()`` not yet filled
(``Persist``): ``ds.cache().count()`` is how users fill a cache, so it must run.
"""

from __future__ import annotations

from .nodes import CachedRead, Coalesce, Narrow, Node, RangeSource, Shuffle, Source, Union

#: narrow kinds that emit exactly one record per input record
ONE_TO_ONE = frozenset({"map", "mapValues", "keyBy", "keys", "values", "zipWithIndex", "zipWithUniqueId",
                        "sortPartition", "spread", "pairWithNone", "pairWithTrue"})


def known_count(node: Node) -> int | None:
    """The dataset's record count if it follows from source sizes alone, else None.

    >>> known_count(ctx.parallelize(range(10)).map(str)._node)      # doctest: +SKIP
    10
    """
    if isinstance(node, (Source, RangeSource)):
        return node.num_records
    if isinstance(node, Narrow):
        return known_count(node.input) if node.kind in ONE_TO_ONE else None
    if isinstance(node, Union):
        counts = [known_count(i) for i in node.inputs]
        return None if None in counts else sum(counts)  # type: ignore[arg-type]
    if isinstance(node, Coalesce):
        return known_count(node.input)
    if isinstance(node, Shuffle) and node.aggregator is None:
        return known_count(node.input)
    if isinstance(node, CachedRead) and node.lineage is not None:
        return known_count(node.lineage)
    return None
