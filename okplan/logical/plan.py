"""The logical plan of one job: a ``networkx`` DAG of nodes with one root (the dataset an action ran on)."""

from __future__ import annotations

from typing import Callable, Iterator

import networkx as nx

from .nodes import Node


class LogicalPlan:
    """A DAG rooted at ``root``; an edge ``a -> b`` means *b reads a*.

    A dataset used by two branches is one node with two out-edges, so the plan is a DAG, not a tree.

    >>> plan = LogicalPlan(ds._node)          # doctest: +SKIP
    >>> plan.graph.number_of_nodes()          # doctest: +SKIP
    3
    """

    __slots__ = ("root", "_graph")

    def __init__(self, root: Node):
        self.root = root
        self._graph: nx.MultiDiGraph | None = None

    @property
    def graph(self) -> nx.MultiDiGraph:
        """The DAG, one edge per read (a multigraph: ``a.union(a)`` reads ``a`` twice); each edge
        carries the input position ``pos``. Built once per plan."""
        if self._graph is None:
            g = nx.MultiDiGraph()
            g.add_node(self.root)
            g.add_edges_from((parent, node, {"pos": pos})
                             for node in postorder(self.root) for pos, parent in enumerate(node.inputs))
            self._graph = g
        return self._graph

    def nodes(self) -> Iterator[Node]:
        """Every node once, inputs before the nodes that read them."""
        return iter(postorder(self.root))

    def read_counts(self) -> dict[int, int]:
        """How often each node of this plan is read, by ``id(node)``: a node read by two consumers (or
        twice by one, as in ``a.union(a)``) counts 2. Look nodes up with the *original* node that
        ``transform(..., with_original=True)`` hands a rule."""
        return {id(node): degree for node, degree in self.graph.out_degree() if degree}

    def transform(self, fn: Callable[..., Node | None], with_original: bool = False) -> "LogicalPlan":
        """Rebuild the plan bottom-up: ``fn(node)`` (with its inputs already rewritten) returns a
        replacement or None to keep it. A node shared by two branches is rewritten once, so the
        result is still a DAG. With ``with_original``, ``fn(node, original)`` also gets the node as it
        was in this plan, so a rule can ask questions of this plan (e.g. ``read_counts``)."""
        done: dict[int, Node] = {}
        for node in postorder(self.root):
            new = node.with_inputs(tuple(done[id(i)] for i in node.inputs))
            out = fn(new, node) if with_original else fn(new)
            done[id(node)] = new if out is None else out
        root = done[id(self.root)]
        return self if root is self.root else LogicalPlan(root)


def postorder(root: Node) -> list[Node]:
    """Nodes reachable from ``root``, each once, every node after all its inputs."""
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
        for parent in reversed(node.inputs):
            if id(parent) not in seen:
                stack.append((parent, False))
    return out
