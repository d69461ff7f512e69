"""Graphviz DOT of a physical plan: a cluster per stage with its operators inside (fused operators one
after another), shuffles and materialised data as edges between stages with their partitioner and
partition counts, and, after a run, each stage's measured figures."""

from __future__ import annotations

from typing import Any

from .operators import PhysOp, Pipe, ReadMaterialized, ShuffleRead
from .stage import Materialize, PhysicalPlan, ShuffleWrite, Stage


def quote(text: str) -> str:
    """A DOT double-quoted string.

    >>> quote('Map(<lambda> at "a.py":3)')
    '"Map(<lambda> at \\\\"a.py\\\\":3)"'
    """
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _stage_label(stage: Stage, m: Any) -> str:
    out = stage.output
    role = ("shuffle map" if isinstance(out, ShuffleWrite) else out.describe() if isinstance(out, Materialize)
            else "result")
    label = f"Stage {stage.id}: {role} ({stage.num_partitions} tasks)"
    if stage.labels:
        label += "\n" + ", ".join(stage.labels)
    if m is not None:
        label += f"\n{m.records_in:,} in, {m.records_out:,} out, {m.seconds * 1000:,.1f} ms"
        if m.bytes_compressed:
            label += f", {m.bytes_compressed:,} B"
    return label


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.ids = 0
        self.shuffle_readers: list[tuple[str, int]] = []   # (node, shuffle id)
        self.cache_readers: list[tuple[str, str]] = []     # (node, cache id)

    def node(self, label: str, indent: str, shape: str = "box") -> str:
        self.ids += 1
        name = f"op{self.ids}"
        self.lines.append(f"{indent}{name} [label={quote(label)}, shape={shape}];")
        return name

    def ops(self, op: PhysOp, indent: str) -> tuple[str, str]:
        """Nodes for ``op``'s tree; (the node its output leaves from, the first node of its own chain)."""
        if isinstance(op, Pipe):
            inner, _ = self.ops(op.child, indent)
            prev = inner
            first = None
            for name in op.names:
                cur = self.node(name, indent)
                self.lines.append(f"{indent}{prev} -> {cur};")
                prev = cur
                first = first or cur
            return prev, first or prev
        me = self.node(op.describe(), indent)
        if isinstance(op, ShuffleRead):
            self.shuffle_readers.append((me, op.shuffle_id))
        elif isinstance(op, ReadMaterialized):
            self.cache_readers.append((me, op.cache_id))
        for child in op.children():
            out, _ = self.ops(child, indent)
            self.lines.append(f"{indent}{out} -> {me};")
        return me, me


def render_dot(plan: PhysicalPlan, metrics: Any = None, title: str | None = None) -> str:
    """The plan as a DOT ``digraph`` (``explain(format="dot")``); ``metrics`` adds measured figures.

    >>> from okplan import Context
    >>> ctx = Context(); plan = ctx._plan(ctx.parallelize([("a", 1)], 2).groupByKey()._node)[3]
    >>> render_dot(plan).count("subgraph cluster_")
    2
    """
    w = _Writer()
    w.lines.append("digraph okplan {")
    w.lines.append("  rankdir=BT; compound=true; graph [fontname=Helvetica]; node [fontname=Helvetica, fontsize=10, style=filled, "
                   "fillcolor=white]; edge [fontname=Helvetica, fontsize=9];")
    if title:
        w.lines.append(f"  label={quote(title)}; labelloc=t;")
    tops: dict[int, str] = {}
    for stage in plan.stages:
        m = metrics.stages.get(stage.id) if metrics is not None else None
        w.lines.append(f"  subgraph cluster_{stage.id} {{")
        color = quote("#eef5ff" if m is not None else "#f4f4f4")
        w.lines.append(f"    label={quote(_stage_label(stage, m))}; style=rounded; bgcolor={color};")
        top, _ = w.ops(stage.root, "    ")
        tops[stage.id] = top
        w.lines.append("  }")
    writer_of_shuffle = {s.output.shuffle_id: s for s in plan.stages if isinstance(s.output, ShuffleWrite)}
    writer_of_cache = {s.output.cache_id: s for s in plan.stages if isinstance(s.output, Materialize)}
    for reader, shuffle_id in w.shuffle_readers:
        src = writer_of_shuffle.get(shuffle_id)
        if src is None:
            continue
        out = src.output
        label = (f"shuffle {shuffle_id}: {out.partitioner.describe()}\n"
                 f"{src.num_partitions} -> {out.partitioner.num_partitions} partitions")
        m = metrics.stages.get(src.id) if metrics is not None else None
        if m is not None:
            label += f"\n{m.records_out:,} records"
            if m.bytes_compressed:
                label += f", {m.bytes_raw:,} B raw, {m.bytes_compressed:,} B lz4"
        w.lines.append(f"  {tops[src.id]} -> {reader} [label={quote(label)}, style=bold, color=\"#c04000\"];")
    for reader, cache_id in w.cache_readers:
        src = writer_of_cache.get(cache_id)
        if src is not None:
            w.lines.append(f"  {tops[src.id]} -> {reader} [label={quote('materialized ' + cache_id)}, style=dashed];")
    w.lines.append("}")
    return "\n".join(w.lines)


__all__ = ["render_dot", "quote"]
