"""Text rendering of logical plans: a tree, root first, with the partition count on every node.
A node read twice is printed once, marked ``[read 2 times]``; the second reference says
``(shared, see above)``. ``bare=True`` leaves out node ids and call sites, for text that does not
depend on where or in which order the plan was built (the rule fixtures compare that)."""

from __future__ import annotations

from .nodes import Node
from .plan import LogicalPlan


def node_line(node: Node, bare: bool = False) -> str:
    text = node.op_name if bare else f"#{node.nid} {node.op_name}"
    details = node.details()
    if details:
        text += f" [{details}]"
    if node.label:
        text += f' "{node.label}"'
    text += f"  ({node.num_partitions} part{'s' if node.num_partitions != 1 else ''})"
    if node.callsite and not bare:
        text += f"  @ {node.callsite}"
    return text


def render_tree(root: Node, bare: bool = False) -> str:
    """The plan below ``root`` as an indented tree.

    >>> print(render_tree(ctx.range(10, numSlices=2).map(str)._node, bare=True))
    Map [str]  (2 parts)
    └─ Range [range(0, 10, 1), 10 records]  (2 parts)
    """
    lines: list[str] = []
    seen: set[int] = set()
    consumers = LogicalPlan(root).read_counts()

    def walk(node: Node, prefix: str, branch: str, child_prefix: str) -> None:
        name = node.op_name if bare else f"#{node.nid} {node.op_name}"
        if id(node) in seen:
            lines.append(f"{prefix}{branch}{name} (shared, see above)")
            return
        seen.add(id(node))
        reads = consumers.get(id(node), 0)
        shared = f"  [read {reads} times]" if reads > 1 else ""
        lines.append(f"{prefix}{branch}{node_line(node, bare)}{shared}")
        kids = node.inputs
        for i, child in enumerate(kids):
            last = i == len(kids) - 1
            walk(child, prefix + child_prefix, "└─ " if last else "├─ ", "   " if last else "│  ")

    walk(root, "", "", "")
    return "\n".join(lines)
