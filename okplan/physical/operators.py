"""Physical operators: the tree one task evaluates to produce one partition of a stage.

They say *how* a partition is computed (read a shuffle, run a fused pipeline, ...). The task runner in
``okplan.exec.task`` evaluates them; every executor uses that same runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..logical.aggregators import Aggregator


@dataclass(frozen=True, eq=False)
class PhysOp:
    def children(self) -> tuple["PhysOp", ...]:
        return ()

    def describe(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, eq=False)
class ReusedOutput(PhysOp):
    """The root of a skipped map stage: its shuffle output, kept by the executor since job ``job``."""

    keep_id: str
    job: int

    def describe(self) -> str:
        return f"skipped (reused from job {self.job})"


@dataclass(frozen=True, eq=False)
class RanFirst(ReusedOutput):
    """As plans show a map stage that adaptive planning ran first, as a query stage of its own."""

    query_job: str = ""

    def describe(self) -> str:
        return f"ran first: adaptive query stage (job {self.query_job}, below)"


@dataclass(frozen=True, eq=False)
class ReadSource(PhysOp):
    """Partitions the client cut up. ``slices`` is None once a cluster executor moved them to its
    block store under ``source_id``."""

    source_id: str
    num_partitions: int
    slices: tuple | None
    label: str | None = None
    records: int = 0

    @property
    def has_data(self) -> bool:
        """True while the partitions travel with the operator (before a cluster moved them out)."""
        return self.slices is not None

    def describe(self) -> str:
        name = f' "{self.label}"' if self.label else ""
        return f"Parallelize{name} [{self.num_partitions} partitions, {self.records:,} records]"


@dataclass(frozen=True, eq=False)
class ReadFiles(PhysOp):
    """Partition ``i`` reads its planned splits ``parts[i]`` in the task (``okplan.io.formats``); the
    client never holds the data, so a cluster ships only the splits."""

    fmt: str
    parts: tuple[tuple[Any, ...], ...]
    use_unicode: bool
    op_name: str
    details: str

    def describe(self) -> str:
        return f"{self.op_name} [{self.details}]"


@dataclass(frozen=True, eq=False)
class ReadRange(PhysOp):
    """A slice of ``range(start, stop, step)``: generated in the task, never shipped."""

    start: int
    stop: int
    step: int
    slices: int

    def partition_range(self, index: int) -> range:
        n = len(range(self.start, self.stop, self.step))
        lo, hi = index * n // self.slices, (index + 1) * n // self.slices
        return range(self.start + lo * self.step, self.start + hi * self.step, self.step)

    def describe(self) -> str:
        return f"Range({self.start}, {self.stop}, {self.step}) [{self.slices} partitions]"


@dataclass(frozen=True, eq=False)
class Pipe(PhysOp):
    """Narrow operations fused into one pass: ``fns[-1](i, ... fns[0](i, child(i)))``."""

    child: PhysOp
    fns: tuple[Callable, ...]
    names: tuple[str, ...]
    #: the user functions of the fused operators, to name the one that raised
    user_funcs: tuple[tuple[Any, ...], ...] = ()

    def children(self) -> tuple[PhysOp, ...]:
        return (self.child,)

    def describe(self) -> str:
        return " -> ".join(self.names)


@dataclass(frozen=True, eq=False)
class UnionOp(PhysOp):
    """Partition ``i`` is partition ``i - offset`` of the child it falls in."""

    parts: tuple[PhysOp, ...]
    counts: tuple[int, ...]

    def children(self) -> tuple[PhysOp, ...]:
        return self.parts

    def describe(self) -> str:
        return f"Union [{' + '.join(map(str, self.counts))} partitions]"


@dataclass(frozen=True, eq=False)
class CoalesceOp(PhysOp):
    child: PhysOp
    groups: tuple[tuple[int, ...], ...]

    def children(self) -> tuple[PhysOp, ...]:
        return (self.child,)

    def describe(self) -> str:
        return f"Coalesce [{sum(map(len, self.groups))} -> {len(self.groups)} partitions, no shuffle]"


@dataclass(frozen=True, eq=False)
class CombineOp(PhysOp):
    """Map-side combine of one partition: ``(k, v)`` into ``(k, combiner)``."""

    child: PhysOp
    aggregator: Aggregator
    #: the API operation it serves (reduceByKey, distinct, ...), for error messages
    kind: str = "aggregate"

    def children(self) -> tuple[PhysOp, ...]:
        return (self.child,)

    def describe(self) -> str:
        return f"PartialAggregate [{self.aggregator.name}]"


@dataclass(frozen=True, eq=False)
class ShuffleRead(PhysOp):
    """All map outputs' buckets for this reduce partition, aggregated per key if ``aggregator``."""

    shuffle_id: int
    aggregator: Aggregator | None
    combined: bool
    kind: str
    #: a skew-split join's side: task ``i`` reads reduce partition ``tasks[i][0]`` from the map outputs
    #: ``[tasks[i][1], tasks[i][2])`` only (None: task ``i`` reads reduce partition ``i`` from all)
    tasks: tuple[tuple[int, int, int], ...] | None = None

    def describe(self) -> str:
        agg = ""
        if self.aggregator is not None:
            agg = f", {'merge ' if self.combined else ''}{self.aggregator.name}"
        if self.tasks is not None:
            agg += f", {len(self.tasks)} tasks over {len({t[0] for t in self.tasks})} partitions (skew split)"
        return f"ShuffleRead [shuffle {self.shuffle_id}{agg}]"


@dataclass(frozen=True, eq=False)
class LocalAggregate(PhysOp):
    """An elided shuffle: the child is already partitioned by key, so aggregate in place."""

    child: PhysOp
    aggregator: Aggregator | None
    combined: bool
    kind: str

    def children(self) -> tuple[PhysOp, ...]:
        return (self.child,)

    def describe(self) -> str:
        agg = f" {'merge ' if self.combined else ''}{self.aggregator.name}" if self.aggregator else ""
        return f"{self.kind} in place [shuffle elided{agg}]"


@dataclass(frozen=True, eq=False)
class CoGroupOp(PhysOp):
    """``(k, (values of part 0, values of part 1, ...))`` for the keys of this partition."""

    parts: tuple[PhysOp, ...]

    def children(self) -> tuple[PhysOp, ...]:
        return self.parts

    def describe(self) -> str:
        return f"CoGroup [{len(self.parts)} inputs]"


@dataclass(frozen=True, eq=False)
class ReadMaterialized(PhysOp):
    """Partitions an earlier stage (or an earlier job, for ``cache()``) materialised."""

    cache_id: str
    scope: str

    def describe(self) -> str:
        what = "cached" if self.scope == "context" else "shared subplan"
        return f"Read{' ' + what} [{self.cache_id}]"


@dataclass(frozen=True, eq=False)
class CartesianOp(PhysOp):
    left: PhysOp
    right: PhysOp
    right_count: int

    def children(self) -> tuple[PhysOp, ...]:
        return (self.left, self.right)

    def describe(self) -> str:
        return "Cartesian"


@dataclass(frozen=True, eq=False)
class HashJoinOp(PhysOp):
    """Build a dict of the right part's values per key, stream the left part past it."""

    parts: tuple[PhysOp, PhysOp]
    how: str

    def children(self) -> tuple[PhysOp, ...]:
        return self.parts

    def describe(self) -> str:
        return f"HashJoin [{self.how}, build right]"


@dataclass(frozen=True, eq=False)
class BroadcastJoinOp(PhysOp):
    """Stream partition ``i`` of ``stream`` past a dict of ``build`` (the small side: its
    ``build_partitions`` partitions, where an earlier job left them or as one parallelized slice, read
    whole by every task; each process builds the dict once per job)."""

    stream: PhysOp
    build: "ReadSource | ReadMaterialized"
    how: str
    build_left: bool
    reason: str = ""
    build_partitions: int = 1

    def children(self) -> tuple[PhysOp, ...]:
        return (self.stream, self.build)

    def describe(self) -> str:
        return f"BroadcastHashJoin [{self.how}, build {'left' if self.build_left else 'right'}: {self.reason}]"


@dataclass(frozen=True, eq=False)
class ZipOp(PhysOp):
    """Partition ``i`` of both children, paired record by record (they must be equally long)."""

    left: PhysOp
    right: PhysOp

    def children(self) -> tuple[PhysOp, ...]:
        return (self.left, self.right)

    def describe(self) -> str:
        return "Zip"


def user_functions(root: PhysOp) -> Iterator[tuple[str, Any]]:
    """``(operator as plans name it, function)`` for every user function in an operator tree, from the
    root down: the fused operators' functions and the aggregators' (error notes and pickling
    diagnoses name the operator this way)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        op = stack.pop()
        if id(op) in seen:
            continue
        seen.add(id(op))
        if isinstance(op, Pipe):
            for name, funcs in zip(op.names, op.user_funcs):
                for f in funcs:
                    yield name, f
        agg = getattr(op, "aggregator", None)
        if agg is not None:
            for f in agg.funcs:
                yield f"{getattr(op, 'kind', 'aggregate')}({agg.name})", f
        stack.extend(reversed(op.children()))
