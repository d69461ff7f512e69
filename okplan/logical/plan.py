"""The logical plan of one job: a ``networkx`` DAG of nodes with one root (the dataset an action ran on)."""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import networkx as nx

from ..errors import InvalidPlanError
from . import nodes as L
from .nodes import Node
from .traits import traits_of


class LogicalPlan:
    """A DAG rooted at ``root``; an edge ``a -> b`` means *b reads a*.

    A dataset used by two branches is one node with two out-edges, so the plan is a DAG, not a tree.

    >>> src = ctx.parallelize(range(4))
    >>> plan = LogicalPlan(src.union(src.map(str))._node)
    >>> plan.graph.number_of_nodes()
    3
    """

    __slots__ = ("root", "_graph", "_order")

    def __init__(self, root: Node):
        self.root = root
        self._graph: nx.MultiDiGraph | None = None
        self._order: list[Node] | None = None

    def _postorder(self) -> list[Node]:
        # nodes are immutable, so the order is computed once per plan: every rule of every optimizer
        # pass walks the plan, and a rule that changes nothing returns this same plan
        if self._order is None:
            self._order = postorder(self.root)
        return self._order

    @property
    def graph(self) -> nx.MultiDiGraph:
        """The DAG, one edge per read (a multigraph: ``a.union(a)`` reads ``a`` twice); each edge
        carries the input position ``pos``. Built once per plan."""
        if self._graph is None:
            g = nx.MultiDiGraph()
            g.add_node(self.root)
            g.add_edges_from((parent, node, {"pos": pos})
                             for node in self._postorder() for pos, parent in enumerate(node.inputs))
            self._graph = g
        return self._graph

    def nodes(self) -> Iterator[Node]:
        """Every node once, inputs before the nodes that read them."""
        return iter(self._postorder())

    def check(self) -> "LogicalPlan":
        """Raise ``InvalidPlanError`` naming the first node that breaks an invariant every plan keeps
        (a rule that produced it has a bug); returns the plan. The optimizer runs it after every rule
        in tests and with ``OKPLAN_CHECK_PLANS=1``.

        >>> LogicalPlan(ctx.parallelize(range(4), 2).map(str)._node).check().root.op_name
        'Map'
        """
        seen: dict[int, Node] = {}
        for node in self.nodes():
            other = seen.setdefault(node.nid, node)
            if other is not node:
                raise InvalidPlanError(f"{_name(node)} appears twice as two different nodes")
            problem = _problem(node)
            if problem:
                raise InvalidPlanError(f"{_name(node)}: {problem}")
        return self

    def read_counts(self) -> dict[int, int]:
        """How often each node of this plan is read, by ``id(node)``: a node read by two consumers (or
        twice by one, as in ``a.union(a)``) counts 2. Look nodes up with the *original* node that
        ``transform(..., with_original=True)`` hands a rule."""
        # counted from the inputs directly: building the networkx graph for this cost more than a
        # small job's tasks (rules ask it on every pass), and the graph's out-degrees are these counts
        counts: dict[int, int] = {}
        for node in self._postorder():
            for parent in node.inputs:
                counts[id(parent)] = counts.get(id(parent), 0) + 1
        return counts

    def transform(self, fn: Callable[..., Node | None], with_original: bool = False) -> "LogicalPlan":
        """Rebuild the plan bottom-up: ``fn(node)`` (with its inputs already rewritten) returns a
        replacement or None to keep it. A node shared by two branches is rewritten once, so the
        result is still a DAG. With ``with_original``, ``fn(node, original)`` also gets the node as it
        was in this plan, so a rule can ask questions of this plan (e.g. ``read_counts``)."""
        done: dict[int, Node] = {}
        for node in self._postorder():
            new = node.with_inputs(tuple(done[id(i)] for i in node.inputs))
            out = fn(new, node) if with_original else fn(new)
            done[id(node)] = new if out is None else out
        root = done[id(self.root)]
        return self if root is self.root else LogicalPlan(root)


def postorder(root: Node, children: Callable[[Node], Sequence[Node]] | None = None) -> list[Node]:
    """Nodes reachable from ``root``, each once, every node after all its inputs (``children(node)``
    when given: the inputs to follow, e.g. not below a shuffle whose output is kept)."""
    out: list[Node] = []
    seen: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            out.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for parent in reversed(node.inputs if children is None else children(node)):
            if id(parent) not in seen:
                stack.append((parent, False))
    return out


#: how many inputs each node class has: (at least, at most)
_ARITY: dict[type, tuple[int, float]] = {
    L.Source: (0, 0), L.RangeSource: (0, 0), L.CachedRead: (0, 0), L.Narrow: (1, 1), L.Coalesce: (1, 1),
    L.PartialAggregate: (1, 1), L.Shuffle: (1, 1), L.Persist: (1, 1), L.Union: (1, float("inf")),
    L.PartitionerAwareUnion: (1, float("inf")), L.CoGroup: (2, float("inf")), L.HashJoin: (2, 2),
    L.Cartesian: (2, 2), L.Zip: (2, 2), L.FileSource: (0, 0), L.BroadcastJoin: (2, 2),
}


def _name(node: Node) -> str:
    return f"#{node.nid} {node.op_name}"


def _problem(node: Node) -> str | None:
    """What is wrong with ``node`` given its inputs, or None."""
    arity = next((_ARITY[c] for c in type(node).__mro__ if c in _ARITY), None)
    if arity is not None and not arity[0] <= len(node.inputs) <= arity[1]:
        return f"has {len(node.inputs)} inputs"
    if node.num_partitions < 0:
        return f"has {node.num_partitions} partitions"
    partitioner = node.partitioner
    if partitioner is not None and partitioner.num_partitions != node.num_partitions:
        return f"claims {partitioner.describe()} over {node.num_partitions} partitions"
    if isinstance(node, L.PartitionerAwareUnion):
        first = node.inputs[0].partitioner
        if first is None or any(i.partitioner != first for i in node.inputs):
            return "inputs are not partitioned alike: " + ", ".join(
                i.partitioner.describe() if i.partitioner else "none" for i in node.inputs)
    if isinstance(node, L.Shuffle):
        if node.elided and node.input.partitioner != node.partitioner_:
            return "elided, but its input is not partitioned by " + node.partitioner_.describe()
        if node.combined and not _combiners_below(node):
            return "merges combiners, but no PartialAggregate of its aggregator is below it"
    if isinstance(node, L.Regrouped):
        for pos in node.elided:
            if pos >= len(node.inputs) or node.inputs[pos].partitioner != node.partitioner_:
                return f"reads input {pos} in place, but it is not partitioned by {node.partitioner_.describe()}"
    if isinstance(node, L.Persist) and node.scope not in ("context", "job"):
        return f"unknown scope {node.scope!r}"
    return None


def _combiners_below(shuffle: L.Shuffle) -> bool:
    """True when the records reaching ``shuffle`` are its aggregator's combiners: a PartialAggregate
    below, maybe under filters or a materialisation that pass combiners on as they are."""
    node = shuffle.input
    while True:
        if isinstance(node, L.PartialAggregate):
            return node.aggregator is shuffle.aggregator
        if len(node.inputs) == 1 and (traits_of(node).keeps_records or isinstance(node, L.Persist)):
            node = node.input
            continue
        if isinstance(node, L.CachedRead) and node.lineage is not None:
            node = node.lineage
            continue
        return False
