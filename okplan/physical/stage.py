"""Stages and the physical plan of one job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..logical.partitioners import Partitioner
from .operators import PhysOp


@dataclass(frozen=True)
class ShuffleWrite:
    """The stage's records go to ``partitioner.num_partitions`` buckets of shuffle ``shuffle_id``.
    ``keep_id``: the executor keeps the finished output under that name for later jobs (shuffle
    reuse); ``reused_from``: the job whose kept output this stage reads instead of running (skipped).
    ``grouped``: the map side groups values per key before partitioning (``groupByKey``), so a bucket
    holds ``(k, [values])`` records: one dict pass per record, and hashing per key, not per record."""

    shuffle_id: int
    partitioner: Partitioner
    kind: str
    keep_id: str | None = None
    reused_from: int | None = None
    grouped: bool = False

    def describe(self) -> str:
        grouped = ", values grouped per key" if self.grouped else ""
        return f"shuffle write {self.shuffle_id} -> {self.partitioner.describe()}{grouped}"


@dataclass(frozen=True)
class Materialize:
    """The stage's partitions are kept whole under ``cache_id`` (``cache()`` or a shared subplan)."""

    cache_id: str
    scope: str

    def describe(self) -> str:
        return f"materialize {self.cache_id} ({'cache' if self.scope == 'context' else 'this job'})"


@dataclass(frozen=True)
class Result:
    """The stage's partitions go through the action's partition function back to the caller."""

    def describe(self) -> str:
        return "result"


@dataclass(frozen=True, eq=False)
class Stage:
    """One fused pipeline run as ``num_partitions`` tasks."""

    id: int
    root: PhysOp
    num_partitions: int
    output: ShuffleWrite | Materialize | Result
    parents: tuple[int, ...]
    #: labels of the datasets computed in this stage, for plans and error notes
    labels: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"stage {self.id}"


@dataclass(eq=False)
class PhysicalPlan:
    """Stages in an order that runs every stage after the stages it reads."""

    stages: list[Stage]
    #: shuffle id -> number of map tasks writing it
    shuffles: dict[int, int] = field(default_factory=dict)
    #: what adaptive planning decided for this job and why (``adaptive: join #7: broadcast join, ...``)
    notes: list[str] = field(default_factory=list)
    #: map stages adaptive planning ran first, as jobs of their own: (plan, metrics) each, for explain
    stages_first: list[tuple["PhysicalPlan", Any]] = field(default_factory=list)
    #: shuffles each bucket of which one task of this plan reads, once (see ``read_once``)
    read_once: frozenset[int] = frozenset()

    @property
    def result_stage(self) -> Stage:
        return self.stages[-1]

    def kept_maps(self) -> dict[str, int]:
        """Keep id -> map outputs of the shuffles this plan writes for reuse."""
        return {s.output.keep_id: s.num_partitions for s in self.stages
                if isinstance(s.output, ShuffleWrite) and s.output.keep_id is not None and s.output.reused_from is None}

    @property
    def num_tasks(self) -> int:
        return sum(s.num_partitions for s in self.stages)

    def stage(self, stage_id: int) -> Stage:
        for s in self.stages:
            if s.id == stage_id:
                return s
        raise KeyError(stage_id)


#: (iterator of one partition) -> per-partition action result
PartitionAction = Callable[[Any], Any]
