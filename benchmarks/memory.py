"""Memory: peak resident memory of processes (Linux ``/proc``), for the per-process memory table, and
the memory section of ``python -m benchmarks``: big by-key jobs with a task memory budget, next to the
same jobs in memory, with every process's peak resident memory, spill bytes and seconds.

The benchmark process runs every engine in turn, so its peak is reset before each engine
(``clear_refs`` 5 resets ``VmHWM``), making each engine's client peak its own. Each case of the memory
section runs in a fresh process (``python -m benchmarks.memory case ...``), so that the client's peak is
its own and a ``local-cluster`` starts fresh workers and Redis whose peaks are theirs.

    python -m benchmarks --memory-only --memory-records 10000000 --memory-budget 256m
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from operator import add
from typing import Any, Callable

from .report import fmt_ratio, table


def peak_rss(pid: int) -> int | None:
    """Peak resident set size of ``pid`` in bytes (``VmHWM``), or None where /proc does not tell."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def reset_peak(pid: int | None = None) -> bool:
    """Start measuring ``pid``'s peak afresh (default: this process); False where not possible."""
    try:
        with open(f"/proc/{pid or os.getpid()}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def engine_peaks(engine: Any) -> dict[str, int | None]:
    """Peak memory of the client and, for a local cluster, of its master, workers and Redis."""
    peaks: dict[str, int | None] = {"client": peak_rss(os.getpid())}
    executor = getattr(getattr(engine, "ctx", None), "executor", None)
    if executor is not None and hasattr(executor, "worker_pids"):
        peaks["master"] = peak_rss(executor.master_pid)
        for i, pid in enumerate(executor.worker_pids()):
            peaks[f"worker {i}"] = peak_rss(pid)
        peaks["redis"] = peak_rss(executor.redis_pid)
    return peaks


# -- the memory section ----------------------------------------------------------------------------------

#: a budget no job here reaches: the "in memory" run of a case
IN_MEMORY = "1t"


def _count_partitions(it) -> list[int]:
    return [sum(1 for _ in it)]


def _group_by_key(ctx, n: int) -> int:
    keys = max(1, n // 10)
    return ctx.range(n).map(lambda x: (x % keys, x)).groupByKey().mapValues(len).count()


def _reduce_by_key(ctx, n: int) -> int:
    keys = max(1, n // 10)
    return ctx.range(n).map(lambda x: (x % keys, x)).reduceByKey(add).count()


def _sort_by_key(ctx, n: int) -> int:
    return ctx.range(n).map(lambda x: ((x * 7919) % n, x)).sortByKey().mapPartitions(_count_partitions).sum()


def _join(ctx, n: int) -> int:
    keys = max(1, n // 10)
    left = ctx.range(n).map(lambda x: (x % keys, x))
    right = ctx.range(keys).map(lambda k: (k, -k))
    return left.join(right).mapPartitions(_count_partitions).sum()


WORKLOADS: dict[str, Callable[[Any, int], int]] = {
    "groupByKey": _group_by_key, "reduceByKey": _reduce_by_key, "sortByKey": _sort_by_key, "join": _join,
}
EXPECTED: dict[str, Callable[[int], int]] = {
    "groupByKey": lambda n: max(1, n // 10), "reduceByKey": lambda n: max(1, n // 10),
    "sortByKey": lambda n: n, "join": lambda n: n,
}


def run_case(workload: str, n: int, master: str, budget: str) -> dict[str, Any]:
    """One job in this process; its seconds, answer check, spill bytes and peak memory per process."""
    from okplan import Context

    ctx = Context(master, task_memory=budget)
    try:
        t0 = time.perf_counter()
        answer = WORKLOADS[workload](ctx, n)
        seconds = time.perf_counter() - t0
        m = ctx.lastJobMetrics()
        spill = sum(s.spill_bytes for s in m.stages.values()) if m else 0
        peaks = {"client": peak_rss(os.getpid())}
        ex = ctx.executor
        if hasattr(ex, "worker_pids"):
            peaks["master"] = peak_rss(ex.master_pid)
            # a worker runs its tasks in child processes (one per slot): they are the worker's memory too
            workers = [peak_rss(p) for w in ex.worker_pids() for p in (w, *_descendants(w))]
            peaks["worker"] = max((w for w in workers if w is not None), default=None)
            peaks["redis"] = peak_rss(ex.redis_pid)
    finally:
        ctx.stop()
    return {"workload": workload, "records": n, "master": master, "budget": budget, "seconds": seconds,
            "ok": answer == EXPECTED[workload](n), "spill_bytes": spill, "peaks": peaks}


def _descendants(pid: int) -> list[int]:
    """Pids of the processes under ``pid`` (Linux ``/proc/<pid>/task/*/children``)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            continue
        for k in kids:
            out += [k, *_descendants(k)]
    return out


def run_section(workloads: list[str], records: list[int], masters: list[str], budget: str,
                log: Callable[[str], None] = lambda s: None, timeout: float = 1800) -> list[dict[str, Any]]:
    """Every case twice, in memory and with ``budget``, each in a fresh process."""
    rows = []
    for n in records:
        for master in masters:
            for wl in workloads:
                for b in (IN_MEMORY, budget):
                    log(f"memory: {wl} {n:,} on {master}, budget {b} ...")
                    cmd = [sys.executable, "-m", "benchmarks.memory", "case", wl, str(n), master, b]
                    try:
                        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
                        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    except (subprocess.SubprocessError, ValueError, IndexError) as e:
                        err = getattr(e, "stderr", "") or ""
                        rows.append({"workload": wl, "records": n, "master": master, "budget": b,
                                     "error": (err.strip().splitlines() or [str(e)])[-1][:200]})
    return rows


def _mb(v: int | None) -> str:
    return "-" if v is None else f"{v / 2**20:,.0f}"


def section_table(rows: list[dict[str, Any]]) -> str:
    """One line per case and budget: seconds (and the ratio to the in-memory run), spill MB, peak MB of
    the client, the master, the biggest worker and Redis."""
    base = {(r["workload"], r["records"], r["master"]): r for r in rows
            if r["budget"] == IN_MEMORY and "error" not in r}
    lines = []
    for r in rows:
        label = "in memory" if r["budget"] == IN_MEMORY else r["budget"]
        if "error" in r:
            lines.append([r["workload"], f"{r['records']:,}", r["master"], label, "error: " + r["error"],
                          "", "", "", "", "", ""])
            continue
        b = base.get((r["workload"], r["records"], r["master"]))
        ratio = "" if r["budget"] == IN_MEMORY or b is None else fmt_ratio(r["seconds"], b["seconds"])
        p = r["peaks"]
        lines.append([r["workload"], f"{r['records']:,}", r["master"], label,
                      f"{r['seconds']:.1f} s" + ("" if r["ok"] else " WRONG"), ratio,
                      _mb(r["spill_bytes"]), _mb(p.get("client")), _mb(p.get("master")), _mb(p.get("worker")),
                      _mb(p.get("redis"))])
    return table(["workload", "records", "master", "budget", "time", "vs memory", "spill MB", "client MB",
                  "master MB", "worker MB (max)", "redis MB"], lines, "lrllrrrrrrr")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("case", help="run one case in this process and print its JSON")
    c.add_argument("workload", choices=list(WORKLOADS))
    c.add_argument("records", type=int)
    c.add_argument("master")
    c.add_argument("budget")
    args = p.parse_args(argv)
    print(json.dumps(run_case(args.workload, args.records, args.master, args.budget)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
