"""``DataSet``: the lazy, immutable handle users chain. Every transformation returns a new DataSet
around a new logical plan node; nothing runs until an action (see ``actions.py``)."""

from __future__ import annotations

import random
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from . import _checks as chk
from .actions import ActionsMixin
from .dataset_files import FileWritersMixin
from .approx import ApproxMixin
from .checkpoint import CheckpointMixin
from .logical import narrow
from .logical import nodes as L
from .sampling import SamplingMixin
from .wide import WideMixin

if TYPE_CHECKING:
    from .context import Context


def union_node(inputs: tuple[L.Node, ...], callsite: str | None) -> L.Node:
    """A plain union, or — when every input has the same partitioner — a union that keeps it, as
    Spark does (so a later reduceByKey or join of the union needs no shuffle)."""
    first = inputs[0].partitioner
    if first is not None and all(i.partitioner == first for i in inputs[1:]):
        return L.PartitionerAwareUnion(inputs=inputs, callsite=callsite)
    return L.Union(inputs=inputs, callsite=callsite)


class DataSet(WideMixin, ActionsMixin, SamplingMixin, ApproxMixin, CheckpointMixin, FileWritersMixin):
    """A partitioned collection, computed lazily. PySpark's ``RDD`` API.

    >>> with Context() as ctx:
    ...     ctx.parallelize([1, 2, 3, 4]).map(lambda x: x * 2).filter(lambda x: x > 2).collect()
    [4, 6, 8]
    """

    __slots__ = ("context", "_node")

    def __init__(self, context: "Context", node: L.Node):
        self.context = context
        self._node = node

    # -- plumbing --------------------------------------------------------------------------------------
    def _derive(self, node: L.Node) -> "DataSet":
        return DataSet(self.context, node)

    def _narrow(self, kind: str, func: Any, fn: Callable, preserves: bool = False, args: tuple = ()) -> "DataSet":
        node = L.Narrow(inputs=(self._node,), kind=kind, func=func, fn=fn, preserves_partitioning=preserves,
                        args=args, callsite=chk.user_callsite())
        return DataSet(self.context, node)

    def __repr__(self) -> str:
        name = f"{self._node.label!r} " if self._node.label else ""
        return f"DataSet[{self._node.nid}] {name}{self._node.op_name} at {self._node.callsite or '?'}"

    # -- identity ---------------------------------------------------------------------------------------
    def id(self) -> int:
        """A unique id of this dataset within the process.

        >>> ds = ctx.parallelize([1])
        >>> ds.id() == ds.id() != ctx.parallelize([1]).id()
        True
        """
        return self._node.nid

    def name(self) -> str | None:
        """The dataset's name (``setName`` or the ``label`` of ``ctx.dataSet``)."""
        return self._node.label

    def setName(self, name: str) -> "DataSet":
        """Name the dataset in plans, logs and error notes; returns this dataset.

        >>> ctx.parallelize([1, 2]).setName("numbers").name()
        'numbers'
        """
        if not isinstance(name, str):
            raise TypeError(f"setName() expects a str, got {type(name).__name__}")
        self._node = self._node.replace(label=name)
        return self

    def getNumPartitions(self) -> int:
        """How many partitions the dataset has.

        >>> ctx.parallelize(range(10), 3).getNumPartitions()
        3
        """
        return self._node.num_partitions

    @property
    def partitioner(self):
        """The partitioner the dataset is known to be partitioned by, or None."""
        return self._node.partitioner

    # -- narrow transformations -------------------------------------------------------------------------
    def map(self, f: Callable[[Any], Any], preservesPartitioning: bool = False) -> "DataSet":
        """Apply ``f`` to every record.

        >>> ctx.parallelize([1, 2, 3]).map(lambda x: x * 10).collect()
        [10, 20, 30]
        """
        chk.check_callable(f, "map")
        return self._narrow("map", f, narrow.map_fn(f), preservesPartitioning)

    def flatMap(self, f: Callable[[Any], Iterable], preservesPartitioning: bool = False) -> "DataSet":
        """Apply ``f`` to every record and flatten the iterables it returns.

        >>> ctx.parallelize(["a b", "c"]).flatMap(str.split).collect()
        ['a', 'b', 'c']
        """
        chk.check_callable(f, "flatMap")
        return self._narrow("flatMap", f, narrow.flat_map_fn(f), preservesPartitioning)

    def filter(self, f: Callable[[Any], bool]) -> "DataSet":
        """Keep the records for which ``f`` is true. Keeps the partitioner.

        >>> ctx.parallelize(range(6)).filter(lambda x: x % 2).collect()
        [1, 3, 5]
        """
        chk.check_callable(f, "filter")
        return self._narrow("filter", f, narrow.filter_fn(f), True)

    def mapPartitions(self, f: Callable[[Iterator], Iterable], preservesPartitioning: bool = False) -> "DataSet":
        """Apply ``f`` to each partition's iterator.

        >>> ctx.parallelize([1, 2, 3, 4], 2).mapPartitions(lambda it: [sum(it)]).collect()
        [3, 7]
        """
        chk.check_callable(f, "mapPartitions")
        return self._narrow("mapPartitions", f, narrow.map_partitions_fn(f), preservesPartitioning)

    def mapPartitionsWithIndex(self, f: Callable[[int, Iterator], Iterable],
                               preservesPartitioning: bool = False) -> "DataSet":
        """Apply ``f(partition_index, iterator)`` to each partition.

        >>> ctx.parallelize([1, 2, 3, 4], 2).mapPartitionsWithIndex(lambda i, it: [i]).collect()
        [0, 1]
        """
        chk.check_callable(f, "mapPartitionsWithIndex")
        return self._narrow("mapPartitionsWithIndex", f, narrow.map_partitions_with_index_fn(f),
                            preservesPartitioning)

    def mapValues(self, f: Callable[[Any], Any]) -> "DataSet":
        """Apply ``f`` to the value of every ``(k, v)`` pair; keeps keys and the partitioner.

        >>> ctx.parallelize([("a", 1)]).mapValues(lambda v: v + 1).collect()
        [('a', 2)]
        """
        chk.check_callable(f, "mapValues")
        return self._narrow("mapValues", f, narrow.map_values_fn(f), True)

    def flatMapValues(self, f: Callable[[Any], Iterable]) -> "DataSet":
        """``(k, x)`` for every ``x`` in ``f(v)``; keeps keys and the partitioner.

        >>> ctx.parallelize([("a", [1, 2])]).flatMapValues(lambda v: v).collect()
        [('a', 1), ('a', 2)]
        """
        chk.check_callable(f, "flatMapValues")
        return self._narrow("flatMapValues", f, narrow.flat_map_values_fn(f), True)

    def keyBy(self, f: Callable[[Any], Any]) -> "DataSet":
        """``(f(x), x)`` for every record.

        >>> ctx.parallelize([1, 2]).keyBy(lambda x: x % 2).collect()
        [(1, 1), (0, 2)]
        """
        chk.check_callable(f, "keyBy")
        return self._narrow("keyBy", f, narrow.key_by_fn(f))

    def keys(self) -> "DataSet":
        """The keys of ``(k, v)`` pairs.

        >>> ctx.parallelize([("a", 1), ("b", 2)]).keys().collect()
        ['a', 'b']
        """
        return self._narrow("keys", None, narrow.keys_fn())

    def values(self) -> "DataSet":
        """The values of ``(k, v)`` pairs.

        >>> ctx.parallelize([("a", 1), ("b", 2)]).values().collect()
        [1, 2]
        """
        return self._narrow("values", None, narrow.values_fn())

    def glom(self) -> "DataSet":
        """Each partition as one list.

        >>> ctx.parallelize([1, 2, 3, 4], 2).glom().collect()
        [[1, 2], [3, 4]]
        """
        return self._narrow("glom", None, narrow.glom_fn())

    def sample(self, withReplacement: bool, fraction: float, seed: int | None = None) -> "DataSet":
        """A random sample: each record kept with probability ``fraction`` (without replacement) or
        repeated a Poisson(``fraction``) number of times (with replacement). Same seed, same sample.

        >>> ctx.parallelize(range(100), 2).sample(False, 0.1, seed=1).count()
        15
        """
        if not isinstance(fraction, (int, float)) or isinstance(fraction, bool):
            raise TypeError(f"sample() expects a number for fraction, got {type(fraction).__name__}")
        if fraction < 0:
            raise ValueError(f"sample() needs fraction >= 0, got {fraction}")
        if not withReplacement and fraction > 1:
            raise ValueError(f"sample() without replacement needs fraction <= 1, got {fraction}")
        if seed is None:
            seed = random.randrange(sys.maxsize)
        return self._narrow("sample", None, narrow.sample_fn(bool(withReplacement), float(fraction), int(seed)),
                            True, (bool(withReplacement), float(fraction), int(seed)))

    def zipWithIndex(self) -> "DataSet":
        """``(x, i)`` with ``i`` the record's position in the whole dataset. Like PySpark, counts the
        records of each partition first (a job) when there is more than one partition.

        >>> ctx.parallelize(["a", "b", "c"], 2).zipWithIndex().collect()
        [('a', 0), ('b', 1), ('c', 2)]
        """
        n = self.getNumPartitions()
        offsets = [0] * n
        if n > 1:
            sizes = self.mapPartitions(lambda it: [sum(1 for _ in it)]).collect()
            for i in range(1, n):
                offsets[i] = offsets[i - 1] + sizes[i - 1]
        return self._narrow("zipWithIndex", None, narrow.zip_with_index_fn(offsets))

    def zipWithUniqueId(self) -> "DataSet":
        """``(x, id)`` with ids ``k * n + i`` for the ``k``-th record of partition ``i`` (no job).

        >>> ctx.parallelize(["a", "b", "c"], 2).zipWithUniqueId().collect()
        [('a', 0), ('b', 1), ('c', 3)]
        """
        return self._narrow("zipWithUniqueId", None, narrow.zip_with_unique_id_fn(self.getNumPartitions()))

    def zip(self, other: "DataSet") -> "DataSet":
        """``(x, y)`` pairs of the records of both datasets in order. As PySpark, both need the same
        number of partitions (else ``ValueError`` now) and of records in each partition (else
        ``ValueError`` when the job runs), e.g. one is a ``map`` of the other.

        >>> ctx.parallelize(range(3)).zip(ctx.parallelize(list("abc"))).collect()
        [(0, 'a'), (1, 'b'), (2, 'c')]
        """
        chk.check_dataset(other, "zip", DataSet, self.context)
        if self.getNumPartitions() != other.getNumPartitions():
            raise ValueError("Can only zip with RDD which has the same number of partitions")
        return self._derive(L.Zip(inputs=(self._node, other._node), callsite=chk.user_callsite()))

    def mapPartitionsWithSplit(self, f: Callable[[int, Iterator], Iterable],
                               preservesPartitioning: bool = False) -> "DataSet":
        """PySpark's deprecated name of ``mapPartitionsWithIndex``.

        >>> ctx.parallelize([1, 2, 3, 4], 2).mapPartitionsWithSplit(lambda i, it: [i]).collect()
        [0, 1]
        """
        return self.mapPartitionsWithIndex(f, preservesPartitioning)

    def pipe(self, command: str, env: dict[str, str] | None = None, checkCode: bool = False) -> "DataSet":
        """Each partition piped through an external command: records go to its standard input as
        ``str(x)`` lines, its output lines (without the newline) are the new records. With
        ``checkCode=True`` a non-zero exit fails the task (its last lines of stderr in the message).
        ``env`` is added to the worker's environment.

        >>> ctx.parallelize(["1", "2", "", "3"]).pipe("cat").collect()
        ['1', '2', '', '3']
        """
        from .pipe import pipe_fn

        if not isinstance(command, str) or not command.strip():
            raise TypeError(f"pipe() expects a command string such as 'grep x', got {command!r:.40}")
        if env is not None and not isinstance(env, dict):
            raise TypeError(f"pipe() expects a dict of environment variables for env, got {type(env).__name__}")
        return self._narrow("pipe", None, pipe_fn(command, dict(env or {}), bool(checkCode)), False,
                            (command,))

    def union(self, other: "DataSet") -> "DataSet":
        """All records of both datasets (duplicates kept), partitions of ``self`` first.

        >>> ctx.parallelize([1, 2]).union(ctx.parallelize([2, 3])).collect()
        [1, 2, 2, 3]
        """
        chk.check_dataset(other, "union", DataSet, self.context)
        return self._derive(union_node((self._node, other._node), chk.user_callsite()))

    def __add__(self, other: "DataSet") -> "DataSet":
        return self.union(other)

    def coalesce(self, numPartitions: int, shuffle: bool = False) -> "DataSet":
        """Fewer partitions; without ``shuffle`` neighbouring partitions are concatenated (order kept).

        >>> ctx.parallelize(range(6), 3).coalesce(1).glom().collect()
        [[0, 1, 2, 3, 4, 5]]
        """
        chk.check_partitions(numPartitions, "coalesce", allow_none=False)
        if shuffle:
            return self.repartition(numPartitions)
        return self._derive(L.Coalesce(inputs=(self._node,), target=numPartitions, callsite=chk.user_callsite()))

    # -- caching ----------------------------------------------------------------------------------------
    def cache(self) -> "DataSet":
        """Keep the partitions once computed, for later jobs of this Context (until ``unpersist``).

        >>> big = ctx.parallelize(range(10)).map(lambda x: x * x).cache()
        >>> big.count(), big.sum()                                 # the second job reads the cache
        (10, 285)
        >>> big.unpersist().is_cached
        False
        """
        return self.persist()

    def persist(self, storageLevel: Any = None) -> "DataSet":
        """Same as ``cache()``; the storage level is accepted for PySpark compatibility (the local
        executor keeps partitions in memory, the cluster in Redis)."""
        self.context.session.persist(self._node)
        return self

    def unpersist(self, blocking: bool = False) -> "DataSet":
        """Drop the cached partitions; later jobs compute the dataset again."""
        self.context.session.unpersist(self._node)
        return self

    @property
    def is_cached(self) -> bool:
        return self.context.session.is_persisted(self._node)

    # -- plans -----------------------------------------------------------------------------------------
    def toDebugString(self, mode: str = "full", analyze: bool = False, format: str = "text") -> str:
        """The plans as text (see ``explain``), or DOT with ``format="dot"``."""
        return self.context.session.explain(self._node, mode, analyze, format)

    def explain(self, mode: str = "full", file: Any = None, analyze: bool = False,
                format: str = "text") -> str | None:
        """Print the logical plan, the optimized plan with the rules that fired, and the physical plan
        (stages, tasks, shuffles). ``mode``: ``"full"`` (default), ``"physical"``, ``"logical"``,
        ``"compact"`` (one line per stage) or ``"metrics"`` (same as ``analyze=True``).

        ``analyze=True`` runs the job if it has not run on this Context and prints the physical plan
        with what each stage measured (tasks, records in/out, bytes, spill, seconds, task skew, top
        operators with ``Context(profile=True)``), like SQL's ``EXPLAIN ANALYZE``.
        ``format="dot"`` returns the physical plan as Graphviz DOT (with figures after a run) instead of
        printing.

        >>> ds = ctx.parallelize(["a b a"], 2).flatMap(str.split).map(len).map(lambda n: (n, 1)).reduceByKey(add)
        >>> ds.explain("compact")
        stage 0 [2 tasks]: Parallelize [2 partitions, 1 records] -> FlatMap(str.split) -> Map(len) -> Map(<lambda> at ...) -> PartialAggregate [add] => shuffle 0 hash(2)
        stage 1 [2 tasks]: ShuffleRead [shuffle 0, merge add] => result
        >>> ds.explain(analyze=True)                        # doctest: +ELLIPSIS
        == Physical plan (local), analyzed ==
        job ...: ... ms, 4 tasks, 1 records shuffled
        ...
        >>> ds.explain(format="dot").startswith("digraph okplan {")
        True
        """
        text = self.toDebugString(mode, analyze, format)
        if format == "dot":
            return text
        print(text, file=file if file is not None else sys.stdout)
        return None

    def visualize(self, filename: str = "plan.svg", format: str | None = None) -> str:
        """Render the physical plan to ``filename`` (``.svg``, ``.png``, ``.pdf``...), as Dask's
        ``visualize``; with figures after a run. Needs the ``graphviz`` package
        (``pip install 'okplan[viz]'``) and Graphviz's ``dot`` program. Returns ``filename``.

        >>> counts.visualize("wordcount.svg")                # doctest: +SKIP
        'wordcount.svg'
        """
        from .visualize import render_file  # noqa: PLC0415 - graphviz is optional

        return render_file(self.toDebugString(format="dot"), filename, format)

    # -- seed API --------------------------------------------------------------------------------------
    def compute(self) -> "DataSet":
        """Materialise the dataset (the seed's ``compute``): runs a job and caches the result, so later
        actions read it. Returns this dataset."""
        self.cache()
        self.count()
        return self

    def getProfile(self) -> dict:
        """Where the last job run on this Context spent its time, per stage and phase.

        >>> ds = ctx.parallelize(range(4), 2).map(str)
        >>> ds.count()
        4
        >>> profile = ds.getProfile()
        >>> profile["stages"][0]["tasks"], sorted(profile["stages"][0]["phases"])
        (2, ['compute'])
        """
        metrics = self.context.lastJobMetrics()
        return metrics.as_dict() if metrics is not None else {}

    def save(self, label: str | None = None) -> "DataSet":
        """Compute the dataset and keep it under ``label`` (default: its name), so that any client of
        the same executor can reopen it with ``ctx.dataSet(label=..., fromExisting=True)``."""
        label = label or self.name()
        if not label:
            raise ValueError("save() needs a label: pass save('name') or setName('name') first")
        parts = self.glom().collect()
        self.context.executor.save_named(label, parts)
        return self
