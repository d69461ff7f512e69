"""Physical planner: cuts an optimized logical plan into stages at shuffle and materialise points.

Each stage's narrow operators become one ``Pipe`` (one pass per partition). A shuffle whose map side
several consumers share is planned once; so is a ``Persist``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ..logical import nodes as L
from ..logical.aggregators import groups_values
from ..logical.plan import LogicalPlan
from .operators import (BroadcastJoinOp, CartesianOp, CoalesceOp, CoGroupOp, CombineOp, HashJoinOp, LocalAggregate,
                        PhysOp, Pipe,
                        ReadMaterialized,
                        ReadFiles, ReadRange, ReadSource, ReusedOutput, ShuffleRead, UnionOp, ZipOp)
from .stage import Materialize, PhysicalPlan, Result, ShuffleWrite, Stage


#: a shuffle of a logical plan: (nid of the Shuffle, CoGroup or HashJoin node, input position; -1 for a Shuffle)
ShuffleSlot = tuple[int, int]
#: what to do with a shuffle's output: (keep it under this id, reuse the one kept since this job or None,
#: the number of map outputs a reused one has: an adaptive re-plan below it may change the map side's)
Keep = tuple[str, "int | None", int]


class _Builder:
    def __init__(self, materialized: frozenset[str], keep: Mapping[ShuffleSlot, Keep]):
        self.keep = keep                          # shuffle reuse, decided by the session
        self.stages: list[Stage] = []
        self.shuffles: dict[int, int] = {}
        self.shuffle_of: dict[int, int] = {}      # id(logical node) -> shuffle id
        self.persist_of: dict[str, str] = {}      # cache_id -> scope
        self.materialized = materialized          # cache ids whose blocks already exist
        self.map_stage: dict[int, int] = {}       # shuffle id -> the stage that writes it
        self.persist_stage: dict[str, int] = {}   # cache id -> the stage that materialises it
        self.parents: set[int] = set()            # parent stage ids of the stage being built
        self.labels: list[str] = []

    # -- stages ------------------------------------------------------------------------------------
    def stage(self, node: L.Node, make_output: Callable[[], Any]) -> int:
        """Plan the stage computing ``node``; ``make_output()`` is called once the stages it reads are
        planned, so shuffle ids follow the order stages run in."""
        saved_parents, saved_labels = self.parents, self.labels
        self.parents, self.labels = set(), []
        root = self.op(node)
        sid = len(self.stages)
        self.stages.append(Stage(sid, root, node.num_partitions, make_output(), tuple(sorted(self.parents)),
                                 tuple(dict.fromkeys(self.labels))))
        self.parents, self.labels = saved_parents, saved_labels
        return sid

    def shuffle(self, key, slot: ShuffleSlot, map_input: L.Node, partitioner, kind: str,
                grouped: bool = False) -> int:
        """The id of the shuffle ``key`` stands for, planning its map stage the first time (a reused
        one as a skipped stage that reads nothing: the stages below it are not planned at all)."""
        if key not in self.shuffle_of:
            keep_id, reused_from, kept_maps = self.keep.get(slot, (None, None, 0))
            maps = kept_maps if reused_from is not None and kept_maps else map_input.num_partitions

            def write() -> ShuffleWrite:
                shuffle_id = len(self.shuffles)
                self.shuffles[shuffle_id] = maps
                self.shuffle_of[key] = shuffle_id
                return ShuffleWrite(shuffle_id, partitioner, kind, keep_id, reused_from, grouped)

            if reused_from is not None:
                sid = len(self.stages)
                self.stages.append(Stage(sid, ReusedOutput(keep_id, reused_from), maps, write(), ()))
            else:
                sid = self.stage(map_input, write)
            self.map_stage[self.shuffle_of[key]] = sid
        shuffle_id = self.shuffle_of[key]
        self.parents.add(self.map_stage[shuffle_id])
        return shuffle_id

    # -- operators ---------------------------------------------------------------------------------
    def op(self, node: L.Node) -> PhysOp:
        if node.label:
            self.labels.append(node.label)
        if isinstance(node, L.Source):
            return ReadSource(f"src{node.nid}", node.num_partitions, node.slices, node.label, node.num_records)
        if isinstance(node, L.RangeSource):
            return ReadRange(node.start, node.stop, node.step, node.slices)
        if isinstance(node, L.FileSource):
            return ReadFiles(node.fmt, node.parts, node.use_unicode, node.op_name, node.details())
        if isinstance(node, L.Narrow):
            child = self.op(node.input)
            name = f"{node.op_name}({node.details()})" if node.details() else node.op_name
            if isinstance(child, Pipe):
                return Pipe(child.child, child.fns + (node.fn,), child.names + (name,),
                            child.user_funcs + (node.funcs(),))
            return Pipe(child, (node.fn,), (name,), (node.funcs(),))
        if isinstance(node, L.Union):
            return UnionOp(tuple(self.op(i) for i in node.inputs), tuple(i.num_partitions for i in node.inputs))
        if isinstance(node, L.Coalesce):
            return CoalesceOp(self.op(node.input), node.groups())
        if isinstance(node, L.PartitionerAwareUnion):
            # partition i of each input, read through their plain union
            union = UnionOp(tuple(self.op(i) for i in node.inputs), tuple(i.num_partitions for i in node.inputs))
            return CoalesceOp(union, node.groups())
        if isinstance(node, L.PartialAggregate):
            return CombineOp(self.op(node.input), node.aggregator, node.for_kind)
        if isinstance(node, L.Shuffle):
            if node.elided:
                return LocalAggregate(self.op(node.input), node.aggregator, node.combined, node.kind)
            # groupByKey's values are grouped on the map side (ShuffleWrite.grouped) and the reduce side
            # merges those lists: the same lists, built with one dict pass instead of a hash, a bucket
            # append and a dict pass per record (the logical plan still says "never combined": no
            # partial aggregate is planned, the shuffle itself writes groups)
            grouped = not node.combined and groups_values(node.aggregator)
            shuffle_id = self.shuffle(id(node), (node.nid, -1), node.input, node.partitioner_, node.kind, grouped)
            return ShuffleRead(shuffle_id, node.aggregator, node.combined or grouped, node.kind)
        if isinstance(node, (L.CoGroup, L.HashJoin)):
            parts = []
            kind = "cogroup" if isinstance(node, L.CoGroup) else node.how
            splits = getattr(node, "splits", ())
            for pos, child in enumerate(node.inputs):
                if pos in node.elided:
                    parts.append(self.op(child))
                else:
                    shuffle_id = self.shuffle((id(node), pos), (node.nid, pos), child, node.partitioner_, kind)
                    # a skew-split join's tasks each read a slice of the map outputs of one reduce partition
                    tasks = tuple((s[0], s[1 + 2 * pos], s[2 + 2 * pos]) for s in splits) if splits else None
                    parts.append(ShuffleRead(shuffle_id, None, False, kind, tasks))
            if isinstance(node, L.HashJoin):
                return HashJoinOp((parts[0], parts[1]), node.how)
            return CoGroupOp(tuple(parts))
        if isinstance(node, L.BroadcastJoin):
            build = self.op(node.inputs[1])
            assert isinstance(build, (ReadSource, ReadMaterialized))
            return BroadcastJoinOp(self.op(node.inputs[0]), build, node.how, node.build_left, node.reason,
                                   node.inputs[1].num_partitions)
        if isinstance(node, L.Cartesian):
            left, right = node.inputs
            return CartesianOp(self.op(left), self.op(right), right.num_partitions)
        if isinstance(node, L.Zip):
            return ZipOp(self.op(node.inputs[0]), self.op(node.inputs[1]))
        if isinstance(node, L.Persist):
            if node.cache_id not in self.materialized and node.cache_id not in self.persist_of:
                self.persist_of[node.cache_id] = node.scope
                output = Materialize(node.cache_id, node.scope)
                self.persist_stage[node.cache_id] = self.stage(node.input, lambda: output)
            sid = self.persist_stage.get(node.cache_id)
            if sid is not None:
                self.parents.add(sid)
            return ReadMaterialized(node.cache_id, node.scope)
        if isinstance(node, L.CachedRead):
            return ReadMaterialized(node.cache_id, "context")
        raise TypeError(f"no physical form for {type(node).__name__}")


def plan_physical(plan: LogicalPlan, materialized: frozenset[str] = frozenset(),
                  keep: Mapping[ShuffleSlot, Keep] | None = None) -> PhysicalPlan:
    """Stages for ``plan``, the result stage last.

    ``materialized``: cache ids whose partitions already exist, so their ``Persist`` reads them instead
    of planning a stage that computes them again. ``keep``: per shuffle, the id to keep its output
    under and the job whose kept output it reuses (its map stage is then skipped).
    """
    b = _Builder(materialized, keep or {})
    b.stage(plan.root, Result)
    return PhysicalPlan(b.stages, b.shuffles, read_once=read_once(b.stages))


def read_once(stages: list[Stage]) -> frozenset[int]:
    """Shuffles whose every bucket is read by one task, once: a single ``ShuffleRead`` in the plan, not
    under a cartesian product (whose tasks read each partition of either side many times) and not split
    by skew (the other side's partition is read by every piece). An executor that hands such buckets over
    lets the reduce side grow them in place instead of copying.

    >>> from okplan.logical.partitioners import HashPartitioner
    >>> read = ShuffleRead(0, None, False, "groupByKey")
    >>> read_once([Stage(0, ReadRange(0, 4, 1, 1), 1, ShuffleWrite(0, HashPartitioner(1), "groupByKey"), ()),
    ...            Stage(1, UnionOp((read, read), (1, 1)), 2, Result(), (0,))])
    frozenset()
    """
    reads: dict[int, int] = {}

    def walk(op: PhysOp, weight: int) -> None:
        if isinstance(op, ShuffleRead):
            reads[op.shuffle_id] = reads.get(op.shuffle_id, 0) + (weight if op.tasks is None else 2)
        for child in op.children():
            walk(child, 2 if isinstance(op, CartesianOp) else weight)

    for stage in stages:
        walk(stage.root, 1)
    return frozenset(s for s, n in reads.items() if n == 1)
