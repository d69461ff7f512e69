"""``toLocalIterator``: the records of a dataset, one partition in this process at a time.

One job per partition (as PySpark). When the dataset has a shuffle below it, the first job keeps the
dataset's partitions in the executor (memory for ``local``, Redis on a cluster) under a temporary cache
and the later jobs read one cached partition each, so the shuffle runs once rather than once per
partition; the cache is dropped when the iterator ends or is closed. With ``prefetch`` the next
partition's job runs in a background thread while the caller consumes the current one.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Iterator

from .actions import PartitionAction, _to_list
from .logical import nodes as L
from .logical.nodes import fresh_id

if TYPE_CHECKING:
    from .session import Session


def local_iterator(session: "Session", node: L.Node, prefetch: bool) -> Iterator[Any]:
    n = node.num_partitions
    if n == 0:
        return
    first = later = node
    cache_id = None
    if any(isinstance(x, L.Partitioned) for x in session.with_caches(node).nodes()):
        cache_id = f"iter-{fresh_id()}"
        first = L.Persist(inputs=(node,), cache_id=cache_id, scope="context", label=node.label, callsite=node.callsite)
        later = L.CachedRead(cache_id=cache_id, partitions=n, partitioner_=node.partitioner, lineage=node,
                             label=node.label, callsite=node.callsite)
    action = PartitionAction(_to_list, "toLocalIterator")

    def fetch(p: int) -> list:
        return session.run_job(first if p == 0 else later, action, [p])[0]

    try:
        if not prefetch or n == 1:
            for p in range(n):
                yield from fetch(p)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="okplan-prefetch") as pool:
            pending = pool.submit(fetch, 0)
            for p in range(n):
                part = pending.result()
                if p + 1 < n:
                    pending = pool.submit(fetch, p + 1)
                yield from part
    finally:
        if cache_id is not None:
            session.drop_cached(cache_id)
