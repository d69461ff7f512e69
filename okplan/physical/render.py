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


def operator_lines(stage: Stage) -> list[str]:
    """The stage's operator tree, one line per operator (as ``explain()`` prints it)."""
    out: list[str] = []
    _op_lines(stage.root, "", "", "", out)
    return out


def render_physical(plan: PhysicalPlan, metrics: Any = None) -> str:
    """Every stage, result stage first, operators below their consumers (as Spark prints plans); with
    ``metrics`` (a ``JobMetrics``), each stage's measured figures under its header."""
    shuffles = len(plan.shuffles)
    lines = [f"{len(plan.stages)} stage{'s' if len(plan.stages) != 1 else ''}, {plan.num_tasks} tasks, "
             f"{shuffles} shuffle{'s' if shuffles != 1 else ''}"]
    lines += plan.notes
    for stage in reversed(plan.stages):
        lines.append(stage_header(stage))
        if metrics is not None:
            m = metrics.stages.get(stage.id)
            lines += ["  " + line for line in measured_lines(m)] if m is not None else ["  measured: not run "
                                                                                           "(read from cache)"]
        _op_lines(stage.root, "  ", "", "", lines)
    if metrics is not None:
        for first, m in plan.stages_first:
            # the query stage's job runs no result task: its map stages are what it is
            ran = PhysicalPlan(first.stages[:-1], first.shuffles)
            lines += ["", f"== Ran first: adaptive query stage (job {getattr(m, 'job_id', None) or '-'}) =="]
            lines += render_physical(ran, m).splitlines()
    return "\n".join(lines)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.2f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def measured_lines(m: Any) -> list[str]:
    """What one stage measured (a ``StageMetrics``), as ``explain(analyze=True)`` shows it."""
    text = (f"measured: {m.tasks} tasks, {m.records_in:,} records in, {m.records_out:,} out, "
            f"{_ms(m.seconds)}")
    if m.tasks > 1 and m.task_seconds_median:
        text += (f" (tasks: median {_ms(m.task_seconds_median)}, max {_ms(m.task_seconds_max)}, "
                 f"skew {m.task_seconds_max / m.task_seconds_median:.1f}x)")
    if m.cpu_seconds:
        text += f", cpu {_ms(m.cpu_seconds)}"
    out = [text]
    if m.bytes_raw or m.bytes_compressed:
        out.append(f"bytes: {m.bytes_raw:,} B raw -> {m.bytes_compressed:,} B lz4")
    skew = getattr(m, "partition_skew", None)
    if skew is not None:
        sizes = m.partition_records
        line = (f"reduce partitions: {len(sizes)}, records min {min(sizes):,} / max {max(sizes):,}; "
                f"biggest: partition {skew[0]} ({sizes[skew[0]] / sum(sizes):.0%} of the records, "
                f"{skew[1]:.1f}x the median)")
        if m.partition_bytes:
            line += f", {sum(m.partition_bytes):,} B"
        out.append(line)
    if m.spill_bytes:
        out.append(f"spilled: {m.spill_bytes:,} B")
    if m.retries:
        out.append(f"retries: {m.retries}")
    phases = {k: v for k, v in m.phases.items() if v > 0}
    if len(phases) > 1:
        total = sum(phases.values())
        out.append("time: " + ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(phases.items(),
                                                                                  key=lambda kv: -kv[1])))
    if m.operators:
        total = sum(m.operators.values()) or 1.0
        top = sorted(m.operators.items(), key=lambda kv: -kv[1])[:3]
        out.append("top operators: " + ", ".join(f"{name} {_ms(s)} ({s / total:.0%})" for name, s in top))
    return out


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


__all__ = ["render_physical", "render_compact", "stage_header", "measured_lines", "operator_lines"]
