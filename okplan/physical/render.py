"""Text rendering of physical plans: stages (result first), each with its operator tree, the shuffle
it reads or writes, and — after a job ran — what it measured."""

from __future__ import annotations

from typing import Any

from .operators import PhysOp, Pipe
from .stage import Materialize, PhysicalPlan, ShuffleWrite, Stage


def stage_header(stage: Stage) -> str:
    out = stage.output
    if isinstance(out, ShuffleWrite):
        role = f"shuffle map -> writes shuffle {out.shuffle_id}, {out.partitioner.describe()}"
        if out.reused_from is not None:
            role += f", skipped (reused from job {out.reused_from})"
    elif isinstance(out, Materialize):
        role = out.describe()
    else:
        role = "result"
    deps = f"  <- reads stage {', '.join(map(str, stage.parents))}" if stage.parents else ""
    labels = f'  datasets: {", ".join(stage.labels)}' if stage.labels else ""
    return f"Stage {stage.id}  {role}  ({stage.num_partitions} task{'s' if stage.num_partitions != 1 else ''}){deps}{labels}"


def _op_lines(op: PhysOp, prefix: str, branch: str, child_prefix: str, out: list[str]) -> None:
    if isinstance(op, Pipe):
        text = "Fused: " + " -> ".join(op.names)
    else:
        text = op.describe()
    out.append(f"{prefix}{branch}{text}")
    kids = op.children()
    for i, child in enumerate(kids):
        last = i == len(kids) - 1
        _op_lines(child, prefix + child_prefix, "└─ " if last else "├─ ", "   " if last else "│  ", out)


def render_physical(plan: PhysicalPlan, metrics: Any = None) -> str:
    """Every stage, result stage first, operators below their consumers (as Spark prints plans)."""
    shuffles = len(plan.shuffles)
    lines = [f"{len(plan.stages)} stage{'s' if len(plan.stages) != 1 else ''}, {plan.num_tasks} tasks, "
             f"{shuffles} shuffle{'s' if shuffles != 1 else ''}"]
    for stage in reversed(plan.stages):
        lines.append(stage_header(stage))
        if metrics is not None and stage.id in metrics.stages:
            m = metrics.stages[stage.id]
            extra = f"  measured: {m.tasks} tasks, {m.records_in:,} records in, {m.records_out:,} out, {m.seconds * 1000:.2f} ms"
            if m.bytes_compressed:
                extra += f", {m.bytes_raw:,} B raw -> {m.bytes_compressed:,} B lz4"
            lines.append(extra)
        _op_lines(stage.root, "  ", "", "", lines)
    return "\n".join(lines)


def render_compact(plan: PhysicalPlan) -> str:
    """One line per stage, in run order."""
    lines = []
    for stage in plan.stages:
        ops: list[str] = []
        _flatten(stage.root, ops)
        out = stage.output
        target = (f"=> shuffle {out.shuffle_id} {out.partitioner.describe()}" if isinstance(out, ShuffleWrite)
                  else f"=> {out.describe()}")
        lines.append(f"stage {stage.id} [{stage.num_partitions} tasks]: {' -> '.join(ops)} {target}")
    return "\n".join(lines)


def _flatten(op: PhysOp, out: list[str]) -> None:
    kids = op.children()
    if len(kids) == 1:
        _flatten(kids[0], out)
    elif kids:
        out.append("(" + " | ".join(_flat_text(k) for k in kids) + ")")
    out.append(" -> ".join(op.names) if isinstance(op, Pipe) else op.describe())


def _flat_text(op: PhysOp) -> str:
    parts: list[str] = []
    _flatten(op, parts)
    return " -> ".join(parts)


__all__ = ["render_physical", "render_compact", "stage_header"]
