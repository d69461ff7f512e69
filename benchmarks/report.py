"""Turning results into tables (markdown, readable on a terminal and pasteable into the docs), the JSON
file of a run, and the optional PNG chart."""

from __future__ import annotations

import json
import os
import re
from typing import Any, Iterable, Sequence

from .runner import RunResult


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A markdown table with padded columns; ``align`` is one letter per column, ``l`` or ``r``."""
    rows = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if a == "r" else c.ljust(w)
                                 for c, w, a in zip(cells, widths, align)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2))
                         for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def fmt_int(n: float | None) -> str:
    return "-" if n is None else f"{int(n):,}"


def _by(results: list[RunResult]) -> dict[tuple[str, str], RunResult]:
    return {(r.workload, r.engine): r for r in results}


def results_table(results: list[RunResult], workloads: list[str], engines: list[str]) -> str:
    """One row per workload and engine: median and best time, and the median's ratio to plain Python's,
    to okplan ``local`` (one core, in process: what ``local[N]`` and the cluster must beat) and to
    PySpark's median (below 1.00x is faster); for engines running in this process, also the ratio of
    their median CPU time to plain Python's (steadier than wall time on a loaded machine)."""
    cells = _by(results)
    rows = []
    for wl in workloads:
        py = cells.get((wl, "python"))
        spark = cells.get((wl, "pyspark"))
        local = cells.get((wl, "okplan-local"))
        py_s = py.median if py and py.status == "ok" else None
        py_cpu = py.cpu_median if py and py.status == "ok" else None
        spark_s = spark.median if spark and spark.status == "ok" else None
        local_s = local.median if local and local.status == "ok" else None
        for eng in engines:
            r = cells.get((wl, eng))
            if r is None:
                continue
            ok = r.status == "ok"
            rows.append([wl, fmt_int(r.records), eng, fmt_seconds(r.median) if ok else "-",
                         fmt_seconds(min(r.samples)) if ok and r.samples else "-",
                         fmt_ratio(r.median, py_s) if ok else "-", fmt_ratio(r.cpu_median, py_cpu) if ok else "-",
                         fmt_ratio(r.median, local_s) if ok and eng != "okplan-local" else "-",
                         fmt_ratio(r.median, spark_s) if ok else "-", r.status, r.note])
    return table(["workload", "records", "engine", "median", "best", "x python", "cpu x python", "x local",
                  "x pyspark", "check", "note"], rows, "lrlrrrrrrll")


def _phases(phases: dict[str, float]) -> str:
    return " ".join(f"{k} {fmt_seconds(v)}" for k, v in sorted(phases.items(), key=lambda kv: -kv[1]) if v)


def stages_table(results: list[RunResult]) -> str:
    """Per okplan job and stage of each workload's median run: tasks, records, bytes and where the
    seconds went."""
    rows = []
    for r in results:
        if not r.engine.startswith("okplan") or r.status != "ok":
            continue
        for j, job in enumerate(r.jobs):
            for sid, st in sorted(job["stages"].items(), key=lambda kv: int(kv[0])):
                rows.append([r.workload, r.engine, j, sid, st["kind"], st["tasks"], fmt_int(st["records_in"]),
                             fmt_int(st["records_out"]), fmt_int(st["bytes_raw"]) if st["bytes_raw"] else "-",
                             fmt_int(st["bytes_compressed"]) if st["bytes_compressed"] else "-",
                             fmt_seconds(st["seconds"]), _phases(st.get("phases", {}))])
    return table(["workload", "engine", "job", "stage", "kind", "tasks", "records in", "records out", "bytes raw",
                  "bytes lz4", "seconds", "phases"], rows, "llrrlrrrrrrl")


def job_totals(jobs: list[dict]) -> dict[str, int]:
    """Jobs, stages, shuffles, tasks, records and bytes shuffled over all jobs of one run."""
    stages = [st for job in jobs for st in job["stages"].values()]
    shuffle = [st for st in stages if st["kind"].startswith("shuffle")]
    return {
        "jobs": len(jobs),
        "stages": len(stages),
        "shuffles": len(shuffle),
        "tasks": sum(st["tasks"] for st in stages),
        "records_shuffled": sum(st["records_out"] for st in shuffle),
        "bytes_shuffled": sum(st["bytes_compressed"] or st["bytes_raw"] for st in shuffle),
    }


def optimizer_rows(results: list[RunResult], workloads: list[str], off_engine: str = "okplan-local-nopt"
                   ) -> list[dict[str, Any]]:
    """Optimizer on (okplan-local) against off (okplan-local-nopt) for each workload; with
    ``off_engine="okplan-local-noadapt"``: adaptive planning on against off."""
    cells = _by(results)
    out = []
    for wl in workloads:
        on, off = cells.get((wl, "okplan-local")), cells.get((wl, off_engine))
        if not on or not off or on.status != "ok" or off.status != "ok":
            continue
        t_on, t_off = job_totals(on.jobs), job_totals(off.jobs)
        out.append({"workload": wl, "on": t_on, "off": t_off, "seconds_on": on.median, "seconds_off": off.median,
                    "shuffle_reduction": (t_off["records_shuffled"] / t_on["records_shuffled"]
                                          if t_on["records_shuffled"] else None),
                    "speedup": off.median / on.median if on.median else None})
    return out


#: (engine with adaptive planning, the same without) compared by ``adaptive_rows``
ADAPTIVE_PAIRS = (("okplan-local", "okplan-local-noadapt"), ("okplan-local[2]", "okplan-local[2]-noadapt"),
                  ("okplan-cluster", "okplan-cluster-noadapt"))


def adaptive_rows(results: list[RunResult], workloads: list[str]) -> list[dict[str, Any]]:
    """Adaptive planning on against off, per workload and executor, with what it decided (the notes of
    the median run's jobs: broadcast, split, coalesced)."""
    cells = _by(results)
    out = []
    for wl in workloads:
        for on_name, off_name in ADAPTIVE_PAIRS:
            on, off = cells.get((wl, on_name)), cells.get((wl, off_name))
            if not on or not off or on.status != "ok" or off.status != "ok":
                continue
            t_on, t_off = job_totals(on.jobs), job_totals(off.jobs)
            out.append({"workload": f"{wl} ({on_name.removeprefix('okplan-')})", "on": t_on, "off": t_off,
                        "seconds_on": on.median, "seconds_off": off.median,
                        "shuffle_reduction": (t_off["records_shuffled"] / t_on["records_shuffled"]
                                              if t_on["records_shuffled"] else None),
                        "speedup": off.median / on.median if on.median else None,
                        "decided": decided(on.jobs)})
    return out


def decided(jobs: list[dict]) -> str:
    """What adaptive planning did in these jobs, briefly: ``broadcast``, ``split p0 into 4``, ``coalesced``."""
    found: list[str] = []
    for job in jobs:
        for note in job.get("notes") or ():
            m = re.search(r"split partition (\d+) .* into (\d+) tasks", note)
            tag = (f"split p{m.group(1)} into {m.group(2)}" if m else "broadcast" if "broadcast join" in note
                   else "coalesced" if "read by" in note or "coalesced" in note else None)
            if tag and tag not in found:
                found.append(tag)
    return ", ".join(found) or "-"


def optimizer_table(rows: list[dict[str, Any]], switch: str = "optimizer") -> str:
    lines = []
    for r in rows:
        for label, t, s in (("on", r["on"], r["seconds_on"]), ("off", r["off"], r["seconds_off"])):
            red = r["shuffle_reduction"]
            lines.append([r["workload"], label, t["jobs"], t["stages"], t["shuffles"], t["tasks"],
                          fmt_int(t["records_shuffled"]), fmt_int(t["bytes_shuffled"]) if t["bytes_shuffled"] else "-",
                          fmt_seconds(s),
                          (f"{red:.1f}x fewer" if red else "-") if label == "on" else "",
                          (f"{r['speedup']:.2f}x" if r["speedup"] else "-") if label == "on" else ""]
                         + ([r["decided"] if label == "on" else ""] if "decided" in r else []))
    extra = ["decided"] if rows and "decided" in rows[0] else []
    return table(["workload", switch, "jobs", "stages", "shuffles", "tasks", "records shuffled",
                  "bytes shuffled", "median", "shuffled on vs off", "speedup", *extra], lines,
                 "llrrrrrrrrr" + "l" * len(extra))


#: (engine with shuffle reuse, the same without) compared by ``reuse_rows``
REUSE_PAIRS = (("okplan-local", "okplan-local-noreuse"), ("okplan-cluster", "okplan-cluster-noreuse"))


def reuse_rows(results: list[RunResult], workloads: list[str]) -> list[dict[str, Any]]:
    """Shuffle reuse on against off, per workload and executor: the notebook's later actions skip the
    shuffle's map stages; a one-shot shuffle shows what keeping its output costs."""
    cells = _by(results)
    out = []
    for wl in workloads:
        for on_name, off_name in REUSE_PAIRS:
            on, off = cells.get((wl, on_name)), cells.get((wl, off_name))
            if not on or not off or on.status != "ok" or off.status != "ok":
                continue
            t_on, t_off = job_totals(on.jobs), job_totals(off.jobs)
            out.append({"workload": wl, "engine": on_name, "seconds_on": on.median, "seconds_off": off.median,
                        "tasks_on": t_on["tasks"], "tasks_off": t_off["tasks"],
                        "speedup": off.median / on.median if on.median else None})
    return out


def reuse_table(rows: list[dict[str, Any]]) -> str:
    lines = [[r["workload"], r["engine"], r["tasks_on"], r["tasks_off"], fmt_seconds(r["seconds_on"]),
              fmt_seconds(r["seconds_off"]), f"{r['speedup']:.2f}x" if r["speedup"] else "-"] for r in rows]
    return table(["workload", "engine", "tasks (reuse)", "tasks (no reuse)", "median (reuse)",
                  "median (no reuse)", "speedup"], lines, "llrrrrr")
#: issue 12's targets for local[N] / local[1] (median time); every other workload must not be slower
CORES_TARGETS = {"pipeline": 0.6, "cpuheavy": 0.6}


def cores_rows(results: list[RunResult], workloads: list[str]) -> list[dict[str, Any]]:
    """local[2] (okplan-local[2]) against one core in-process (okplan-local) per workload, with where
    the jobs ran (task processes or in-process) and the target each ratio has to meet."""
    cells = _by(results)
    out = []
    for wl in workloads:
        one, many = cells.get((wl, "okplan-local")), cells.get((wl, "okplan-local[2]"))
        if not one or not many or one.status != "ok" or many.status != "ok" or not one.median:
            continue
        pooled = sum(1 for job in many.jobs if any(k.startswith("task process") for k in job.get("tasks_per_worker", {})))
        # a pool job may run a stage's share in-process (local[N]'s probe): tasks say where the work went
        tasks = [(w, n) for job in many.jobs for w, n in job.get("tasks_per_worker", {}).items()]
        there = sum(n for w, n in tasks if w.startswith("task process"))
        cpu_1, cpu_2 = _task_cpu(one.jobs), _task_cpu(many.jobs)
        out.append({"workload": wl, "local_1": one.median, "local_2": many.median, "ratio": many.median / one.median,
                    "target": CORES_TARGETS.get(wl, 1.0), "pool_jobs": pooled, "jobs": len(many.jobs),
                    "pool_tasks": there, "tasks": sum(n for _, n in tasks),
                    "cpu_ratio": cpu_2 / cpu_1 if cpu_1 else None})
    return out


def _task_cpu(jobs: list[dict]) -> float:
    return sum(st.get("cpu_seconds") or 0.0 for job in jobs for st in job.get("stages", {}).values())


def cores_table(rows: list[dict[str, Any]]) -> str:
    """The ratio of medians, and of the tasks' CPU seconds (independent of how busy the machine was: what
    the pool costs on top of the work, before it is shared out over the cores)."""
    lines = [[r["workload"], fmt_seconds(r["local_1"]), fmt_seconds(r["local_2"]), f"{r['ratio']:.2f}",
              f"<= {r['target']:.2f}", "yes" if r["ratio"] <= r["target"] else "no",
              f"{r['cpu_ratio']:.2f}" if r.get("cpu_ratio") else "-",
              f"{r['pool_jobs']} of {r['jobs']} on task processes",
              f"{r.get('pool_tasks', 0)} of {r.get('tasks', 0)}"] for r in rows]
    return table(["workload", "local[1]", "local[2]", "local[2] / local[1]", "target", "met", "task CPU ratio",
                  "jobs", "tasks on task processes"], lines, "lrrrrlrlr")


def micro_table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for r in rows:
        lines.append([r["group"], r["name"], r.get("value_text", "-"), r.get("limit_name", ""),
                      r.get("limit_text", ""), f"{r['of_limit'] * 100:.0f}%" if r.get("of_limit") else "",
                      r.get("note", "")])
    return table(["component", "measure", "okplan", "limit", "limit value", "of limit", "note"], lines, "llrlrrl")


def memory_table(engines: dict[str, dict[str, Any]]) -> str:
    """Peak resident memory per engine and process (client; a local cluster's master, workers, Redis)."""
    lines = []
    for name, info in engines.items():
        for process, peak in (info.get("peak_rss") or {}).items():
            if process == "client" and info.get("client_shared"):
                process = "client (all engines: --order engine separates them)"
            lines.append([name, process, "-" if peak is None else f"{peak / 2**20:,.0f} MB"])
    return table(["engine", "process", "peak RSS"], lines, "llr")


def write_json(path: str, payload: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=str)


def write_chart(path: str, results: list[RunResult], workloads: list[str], engines: list[str]) -> str | None:
    """A grouped bar chart (log scale) of median seconds per workload and engine; None without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001 - the chart is optional
        return None
    cells = _by(results)
    shown = [e for e in engines if any((w, e) in cells and cells[(w, e)].status == "ok" for w in workloads)]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(workloads)), 4.5))
    width = 0.8 / len(shown)
    for j, eng in enumerate(shown):
        xs, ys = [], []
        for i, wl in enumerate(workloads):
            r = cells.get((wl, eng))
            if r is not None and r.status == "ok" and r.median:
                xs.append(i + (j - (len(shown) - 1) / 2) * width)
                ys.append(r.median)
        ax.bar(xs, ys, width, label=eng)
    ax.set_yscale("log")
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels(workloads)
    ax.set_ylabel("median seconds (log)")
    ax.set_title("okplan benchmark: engines per workload (lower is better)")
    ax.legend(fontsize=8, ncols=min(3, len(shown)))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
