"""Answers the plan already knows, so the Context can skip running tasks.

``known_count(node)``: the number of records when every node between the root and the sources keeps
one output record per input record (map, keyBy, zipWithIndex, union, coalesce, a shuffle that only
moves records, ...) and the sources know their sizes. A filter, a flatMap or an aggregation makes the
count unknown.

``count_without_running(node)``: that count only when running the job would change nothing but the
time it takes: no node on the way calls a user function or could fail on a record, and no ``cache()``
waits to be filled. ``count()`` answers with it, so ``ds.map(validate).count()`` still calls
``validate`` on every record (PySpark users count to force evaluation), ``ds.cache().count()`` still
fills the cache, and ``ctx.parallelize(data).union(other).repartition(8).count()`` runs nothing.
"""

from __future__ import annotations

from .nodes import CachedRead, Node, RangeSource, Source
from .traits import shape_of, traits_of, user_functions


def known_count(node: Node) -> int | None:
    """The dataset's record count if it follows from source sizes alone, else None.

    >>> known_count(ctx.parallelize(range(10)).map(str)._node)
    10
    >>> known_count(ctx.parallelize(range(10)).filter(bool)._node) is None
    True
    """
    if isinstance(node, (Source, RangeSource)):
        return node.num_records
    if isinstance(node, CachedRead):
        return known_count(node.lineage) if node.lineage is not None else None
    if not traits_of(node).one_to_one:
        return None
    counts = [known_count(i) for i in node.inputs]
    return None if None in counts else sum(counts)  # type: ignore[arg-type]


def count_without_running(node: Node) -> int | None:
    """``known_count(node)`` when computing the dataset would call no user function, fail on no record
    and fill no cache, else None (then ``count()`` runs the job, as PySpark does).

    >>> count_without_running(ctx.range(10).union(ctx.parallelize([1, 2])).repartition(3)._node)
    12
    >>> count_without_running(ctx.parallelize(range(10)).map(str)._node) is None
    True
    """
    return known_count(node) if _runs_nothing(node) else None


def _runs_nothing(node: Node) -> bool:
    """True when reading ``node``'s records calls no user code and cannot fail."""
    if isinstance(node, CachedRead):
        return True  # the functions below it ran when the cache was filled
    traits = traits_of(node)
    if not node.inputs:
        return traits.total and not user_functions(node)   # a source that only hands out records
    if not (traits.one_to_one and traits.total) or user_functions(node):
        return False
    if any(shape_of(i) < traits.reads for i in node.inputs):
        return False
    return all(_runs_nothing(i) for i in node.inputs)
