"""Logical plan nodes: small immutable descriptions of *what* to compute.

Every node knows its inputs, so a node is the root of its own plan DAG (see ``plan.py``). Nodes compare
by identity: two datasets built by two calls are two nodes even when they look alike; the shared-subplan
rule decides when two of them may be merged.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

from .aggregators import Aggregator
from .partitioners import Partitioner

_ids = itertools.count(1)

PartitionFn = Callable[[int, Iterator], Iterator]


def fresh_id() -> int:
    return next(_ids)


@dataclass(frozen=True, eq=False, kw_only=True)
class Node:
    """Base of all plan nodes."""

    inputs: tuple["Node", ...] = ()
    #: the dataset's name (``setName`` / the seed's ``label``), shown in plans and error notes
    label: str | None = None
    #: ``file:line`` of the user call that created the node
    callsite: str | None = None
    nid: int = field(default_factory=fresh_id)

    op_name: ClassVar[str] = "Node"

    @property
    def input(self) -> "Node":
        return self.inputs[0]

    @property
    def num_partitions(self) -> int:
        return self.inputs[0].num_partitions

    @property
    def partitioner(self) -> Partitioner | None:
        return None

    def details(self) -> str:
        """The operator's arguments, as plans show them."""
        return ""

    def funcs(self) -> tuple:
        """The user functions this node calls (for error notes and structural comparison)."""
        return ()

    def key(self) -> tuple:
        """Everything but the inputs that makes this node compute what it computes."""
        return (type(self),)

    def replace(self, **changes: Any) -> "Node":
        """A copy with some fields changed; keeps ``nid`` so plans before and after a rewrite line up."""
        return dataclasses.replace(self, **changes)

    def with_inputs(self, inputs: tuple["Node", ...]) -> "Node":
        if len(inputs) == len(self.inputs) and all(a is b for a, b in zip(inputs, self.inputs)):
            return self
        return self.replace(inputs=tuple(inputs))


@dataclass(frozen=True, eq=False, kw_only=True)
class Source(Node):
    """Records the client holds, already cut into partitions (``parallelize``, ``dataSet``)."""

    slices: tuple[list, ...]
    op_name: ClassVar[str] = "Parallelize"

    @property
    def num_partitions(self) -> int:
        return len(self.slices)

    @property
    def num_records(self) -> int:
        return sum(map(len, self.slices))

    def details(self) -> str:
        return f"{self.num_records:,} records"

    def key(self) -> tuple:
        return (type(self), id(self.slices))


@dataclass(frozen=True, eq=False, kw_only=True)
class RangeSource(Node):
    """``range(start, stop, step)`` cut into ``slices`` partitions; generated where it is read."""

    start: int
    stop: int
    step: int
    slices: int
    op_name: ClassVar[str] = "Range"

    @property
    def num_partitions(self) -> int:
        return self.slices

    @property
    def num_records(self) -> int:
        return len(range(self.start, self.stop, self.step))

    def partition_range(self, index: int) -> range:
        n = self.num_records
        lo, hi = index * n // self.slices, (index + 1) * n // self.slices
        return range(self.start + lo * self.step, self.start + hi * self.step, self.step)

    def details(self) -> str:
        return f"range({self.start}, {self.stop}, {self.step}), {self.num_records:,} records"

    def key(self) -> tuple:
        return (type(self), self.start, self.stop, self.step, self.slices)


@dataclass(frozen=True, eq=False, kw_only=True)
class Narrow(Node):
    """A per-partition transformation: ``fn(partition_index, iterator) -> iterator``.

    ``kind`` is the API name (map, filter, flatMap, mapValues, ...) and ``func`` the user's function;
    plans show those, the runner only calls ``fn``.
    """

    kind: str
    func: Any = None
    fn: PartitionFn
    preserves_partitioning: bool = False
    #: extra arguments that change what the node computes (e.g. sample's fraction and seed)
    args: tuple = ()

    @property
    def op_name(self) -> str:  # type: ignore[override]
        return self.kind[0].upper() + self.kind[1:]

    @property
    def partitioner(self) -> Partitioner | None:
        return self.input.partitioner if self.preserves_partitioning else None

    def details(self) -> str:
        parts = [func_name(self.func)] if self.func is not None else []
        parts += [repr(a) for a in self.args]
        return ", ".join(parts)

    def funcs(self) -> tuple:
        return (self.func,) if self.func is not None else ()

    def key(self) -> tuple:
        # without a user function or arguments, the partition function itself is the identity
        anonymous = self.func is None and not self.args
        return (type(self), self.kind, self.func, self.fn if anonymous else None,
                self.preserves_partitioning, self.args)


@dataclass(frozen=True, eq=False, kw_only=True)
class Union(Node):
    """The partitions of all inputs, one after the other."""

    op_name: ClassVar[str] = "Union"

    @property
    def num_partitions(self) -> int:
        return sum(i.num_partitions for i in self.inputs)


@dataclass(frozen=True, eq=False, kw_only=True)
class Coalesce(Node):
    """Fewer partitions without a shuffle: output partition ``i`` concatenates a contiguous run of
    input partitions (``groups()``)."""

    target: int
    #: explicit runs of input partitions (adaptive planning cuts them by measured sizes), else even runs
    ranges: tuple[tuple[int, ...], ...] = ()
    op_name: ClassVar[str] = "Coalesce"

    @property
    def num_partitions(self) -> int:
        if self.ranges:
            return len(self.ranges)
        return max(1, min(self.target, self.input.num_partitions)) if self.input.num_partitions else 0

    def groups(self) -> tuple[tuple[int, ...], ...]:
        if self.ranges:
            return self.ranges
        n, k = self.input.num_partitions, self.num_partitions
        return tuple(tuple(range(i * n // k, (i + 1) * n // k)) for i in range(k))

    def details(self) -> str:
        return f"{self.input.num_partitions} -> {self.num_partitions}"

    def key(self) -> tuple:
        return (type(self), self.target, self.ranges)


@dataclass(frozen=True, eq=False, kw_only=True)
class PartitionerAwareUnion(Node):
    """The union of inputs partitioned by one partitioner (Spark's ``PartitionerAwareUnionRDD``):
    partition ``i`` holds partition ``i`` of every input, so the result keeps the partitioner and its
    partition count."""

    op_name: ClassVar[str] = "PartitionerAwareUnion"

    @property
    def partitioner(self) -> Partitioner | None:
        return self.inputs[0].partitioner

    def groups(self) -> tuple[tuple[int, ...], ...]:
        """Output partition ``i``: partition ``i`` of each input, as positions in their plain union."""
        n, k = self.num_partitions, len(self.inputs)
        return tuple(tuple(j * n + i for j in range(k)) for i in range(n))

    def details(self) -> str:
        return f"{len(self.inputs)} inputs partitioned alike"


@dataclass(frozen=True, eq=False, kw_only=True)
class PartialAggregate(Node):
    """Map-side combine: ``(k, v)`` records of one partition folded into ``(k, combiner)``.
    Inserted by the combiner-lifting rule below an aggregating shuffle."""

    aggregator: Aggregator
    #: the API operation it serves (reduceByKey, distinct, ...), for error messages
    for_kind: str = "aggregate"
    op_name: ClassVar[str] = "PartialAggregate"

    @property
    def partitioner(self) -> Partitioner | None:
        return self.input.partitioner

    def details(self) -> str:
        return self.aggregator.name

    def funcs(self) -> tuple:
        return self.aggregator.funcs

    def key(self) -> tuple:
        return (type(self), self.aggregator)


@dataclass(frozen=True, eq=False, kw_only=True)
class Partitioned(Node):
    """A node that moves records so that its output is partitioned by its own ``partitioner_``."""

    partitioner_: Partitioner

    @property
    def num_partitions(self) -> int:
        return self.partitioner_.num_partitions

    @property
    def partitioner(self) -> Partitioner | None:
        return self.partitioner_


@dataclass(frozen=True, eq=False, kw_only=True)
class Regrouped(Partitioned):
    """Several inputs brought together by key; those listed in ``elided`` are already partitioned by
    ``partitioner_`` and are read in place, the others are shuffled."""

    elided: frozenset = frozenset()

    def elided_note(self) -> str:
        return f", ELIDED shuffle of input(s) {sorted(self.elided)}" if self.elided else ""


@dataclass(frozen=True, eq=False, kw_only=True)
class Shuffle(Partitioned):
    """Moves ``(k, v)`` records so that each key lands in ``partitioner.partition(k)``, optionally
    aggregating per key (``reduceByKey``, ``groupByKey``, ``partitionBy``, ``sortByKey``, ...).

    ``combined``: the input already holds combiners (a ``PartialAggregate`` below), so the reduce side
    merges combiners instead of values. ``elided``: the input is already partitioned by
    ``partitioner``, so no data moves and the aggregation runs within each partition.
    """

    kind: str
    aggregator: Aggregator | None = None
    combined: bool = False
    elided: bool = False
    op_name: ClassVar[str] = "Shuffle"

    def details(self) -> str:
        parts = [self.kind, self.partitioner_.describe()]
        if self.aggregator is not None:
            parts.append(("merge " if self.combined else "") + self.aggregator.name)
        if self.elided:
            parts.append("ELIDED: input already partitioned")
        return ", ".join(parts)

    def funcs(self) -> tuple:
        return self.aggregator.funcs if self.aggregator else ()

    def key(self) -> tuple:
        return (type(self), self.kind, self.partitioner_, self.aggregator, self.combined, self.elided)


@dataclass(frozen=True, eq=False, kw_only=True)
class CoGroup(Regrouped):
    """``(k, (values_of_input_0, values_of_input_1, ...))`` for every key of any input; the base of
    join, cogroup and the outer joins. Inputs listed in ``elided`` are already partitioned by
    ``partitioner_`` and are read in place, without a shuffle."""

    #: inputs whose values the consumer ignores (only whether a key occurs matters: the right side of
    #: subtract, both sides of intersection), so they may be de-duplicated before the shuffle
    presence_only: frozenset = frozenset()
    op_name: ClassVar[str] = "CoGroup"

    def details(self) -> str:
        return f"{len(self.inputs)} inputs, {self.partitioner_.describe()}{self.elided_note()}"

    def key(self) -> tuple:
        return (type(self), self.partitioner_, self.elided, self.presence_only)


@dataclass(frozen=True, eq=False, kw_only=True)
class Persist(Node):
    """Materialise the input's partitions once. ``scope='context'`` is ``cache()``: kept until
    ``unpersist()``; ``scope='job'`` is a subplan shared inside one job, dropped when the job ends."""

    cache_id: str
    scope: str = "context"
    op_name: ClassVar[str] = "Persist"

    @property
    def partitioner(self) -> Partitioner | None:
        return self.input.partitioner

    def details(self) -> str:
        return f"{self.scope} {self.cache_id}"

    def key(self) -> tuple:
        return (type(self), self.cache_id)


@dataclass(frozen=True, eq=False, kw_only=True)
class CachedRead(Node):
    """Partitions a ``Persist`` already materialised (a leaf: nothing below it runs)."""

    cache_id: str
    partitions: int
    partitioner_: Partitioner | None = None
    #: the plan that produced the cache, shown in explain() and used to recompute lost blocks
    lineage: Node | None = None
    op_name: ClassVar[str] = "CachedRead"

    @property
    def num_partitions(self) -> int:
        return self.partitions

    @property
    def partitioner(self) -> Partitioner | None:
        return self.partitioner_

    def details(self) -> str:
        return self.cache_id

    def key(self) -> tuple:
        return (type(self), self.cache_id)


def func_name(fn: Any) -> str:
    """A short readable name for a user function: ``name`` or ``<lambda> at file.py:12``."""
    if fn is None:
        return ""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        return type(fn).__name__
    code = getattr(fn, "__code__", None)
    if name.endswith("<lambda>") and code is not None:
        return f"<lambda> at {code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno}"
    return name


@dataclass(frozen=True, eq=False, kw_only=True)
class Cartesian(Node):
    """Every pair ``(x, y)``; partition ``i`` pairs left partition ``i // n_right`` with right
    partition ``i % n_right`` (both narrow dependencies, as in Spark)."""

    op_name: ClassVar[str] = "Cartesian"

    @property
    def num_partitions(self) -> int:
        return self.inputs[0].num_partitions * self.inputs[1].num_partitions


@dataclass(frozen=True, eq=False, kw_only=True)
class HashJoin(Regrouped):
    """``(k, (v, w))`` for the two inputs' pairs with equal keys (``how``: join, leftOuterJoin,
    rightOuterJoin or fullOuterJoin): the right input's values are put in a dict per partition and the
    left input streams past it. Chosen by the ``hash_join`` rule in place of CoGroup + a per-key
    product, which groups both sides into lists first."""

    how: str
    #: adaptive skew splitting (``okplan/query_stages.py``): output partition ``i`` joins reduce partition
    #: ``splits[i][0]`` of the left side's map outputs ``[splits[i][1], splits[i][2])`` with the right
    #: side's ``[splits[i][3], splits[i][4])``; the output is then no longer partitioned by the partitioner
    splits: tuple[tuple[int, int, int, int, int], ...] = ()
    op_name: ClassVar[str] = "HashJoin"

    @property
    def num_partitions(self) -> int:
        return len(self.splits) if self.splits else self.partitioner_.num_partitions

    @property
    def partitioner(self) -> Partitioner | None:
        return None if self.splits else self.partitioner_

    def details(self) -> str:
        split = f", {len(self.splits)} tasks for {self.partitioner_.num_partitions} partitions (skew split)" \
            if self.splits else ""
        return f"{self.how}, {self.partitioner_.describe()}, build right{self.elided_note()}{split}"

    def key(self) -> tuple:
        return (type(self), self.how, self.partitioner_, self.elided, self.splits)


@dataclass(frozen=True, eq=False, kw_only=True)
class BroadcastJoin(Node):
    """A join whose small side was collected by the session's adaptive planning (``okplan/adaptive.py``):
    ``inputs[0]`` (the big side) is read in place, partition by partition, and every task probes a dict
    of ``inputs[1]``, the small side, which no shuffle moves: the partitions the session's job left
    in a temporary cache (``CachedRead``), or a one-partition ``Source`` holding it.
    ``build_left``: the small side is the join's left side (``rightOuterJoin`` or an inner join with the
    smaller left). The output keeps the big side's partitions, so adaptive planning uses it only where
    partitioning and order are not observable."""

    how: str
    build_left: bool = False
    #: why adaptive planning chose it, for plans (``right side 1,203 records / 40 KB``)
    reason: str = ""
    op_name: ClassVar[str] = "BroadcastHashJoin"

    def details(self) -> str:
        return f"{self.how}, build {'left' if self.build_left else 'right'}: {self.reason}"

    def key(self) -> tuple:
        return (type(self), self.how, self.build_left)


@dataclass(frozen=True, eq=False, kw_only=True)
class FileSource(Node):
    """Files read where the tasks run (``textFile``, ``jsonFile``, ``wholeTextFiles``, ``pickleFile``).
    ``parts`` holds each partition's planned splits (file, start, length: ``okplan.io.splits.Split``),
    never data; ``fmt`` says how a split becomes records (``text``, ``json``, ``whole``, ``pickle``)."""

    fmt: str
    #: the path spec as the user gave it, resolved (``file:/abs/logs/*.gz``), for plans
    paths: tuple[str, ...]
    parts: tuple[tuple[Any, ...], ...]
    num_files: int
    total_bytes: int
    use_unicode: bool = True

    OP_NAMES: ClassVar[dict[str, str]] = {"text": "TextFile", "json": "JsonFile", "whole": "WholeTextFiles",
                                          "pickle": "PickleFile"}

    @property
    def op_name(self) -> str:  # type: ignore[override]
        return self.OP_NAMES[self.fmt]

    @property
    def num_partitions(self) -> int:
        return len(self.parts)

    def details(self) -> str:
        shown = ", ".join(self.paths[:3]) + (f", ... (+{len(self.paths) - 3})" if len(self.paths) > 3 else "")
        splits = sum(map(len, self.parts))
        return (f"{shown}: {self.num_files} file{'s' if self.num_files != 1 else ''}, {splits} "
                f"split{'s' if splits != 1 else ''}, {human_bytes(self.total_bytes)}")

    def key(self) -> tuple:
        return (type(self), self.fmt, self.parts, self.use_unicode)


def human_bytes(n: int) -> str:
    """``1.5 MB`` style sizes for plans.

    >>> human_bytes(1536), human_bytes(12)
    ('1.5 KB', '12 B')
    """
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@dataclass(frozen=True, eq=False, kw_only=True)
class Zip(Node):
    """``(x, y)`` for the i-th records of the same partition of both inputs (``zip``): a narrow
    dependency on each, so both must have as many partitions and as many records per partition."""

    op_name: ClassVar[str] = "Zip"
