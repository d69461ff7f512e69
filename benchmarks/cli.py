"""``python -m benchmarks``: run workloads on engines, print the tables, write JSON (and a PNG chart).

    python -m benchmarks                                   # everything at full size
    python -m benchmarks --size small --engines python,okplan-local --repeat 3
    python -m benchmarks --workloads pipeline,tiny --records pipeline=2000000 --no-micro
    python -m benchmarks --memory-only --memory-records 10000000,20000000 --memory-budget 256m
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from typing import Any, Sequence

from . import report
from .files import FULL_MB, files_table, run_files
from .engines import DEFAULT_ENGINES, ENGINE_NAMES, Engine, make_engine
from .machine import machine_info, versions
from . import memory
from .memory import engine_peaks, reset_peak
from .micro import MICRO, run_micro
from .runner import RunResult, run_interleaved, run_one
from .workloads import WORKLOADS

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

#: named sizes: the fraction of each workload's full record count
SIZES = {"smoke": 0.002, "small": 0.1, "medium": 0.5, "full": 1.0}


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="full",
                   help=f"scale of every workload: {', '.join(SIZES)} or a number (1 = full size)")
    p.add_argument("--records", action="append", default=[], metavar="WORKLOAD=N",
                   help="records of one workload, overriding --size (repeatable)")
    p.add_argument("--engines", default=",".join(DEFAULT_ENGINES),
                   help=f"comma-separated, from {', '.join(ENGINE_NAMES)}")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated, from {', '.join(WORKLOADS)}")
    p.add_argument("--repeat", type=int, default=5, help="timed samples per cell; the table shows their median")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before the samples")
    p.add_argument("--order", choices=("interleaved", "engine"), default="interleaved",
                   help="interleaved (default): all engines run side by side, one sample of each per round, "
                        "so a machine that changes speed biases none of them; engine: every sample of one "
                        "engine before the next (gives each engine's own client peak memory)")
    p.add_argument("--partitions", type=int, default=4, help="partitions of every input and shuffle")
    p.add_argument("--cores", type=int, default=2, help="PySpark local[N], Dask workers, local-cluster[N]")
    p.add_argument("--micro", default=",".join(MICRO), help=f"micro-benchmarks, from {', '.join(MICRO)}")
    p.add_argument("--no-micro", action="store_true", help="skip the micro-benchmarks")
    p.add_argument("--files-mb", type=float, default=None,
                   help=f"size of the files section's text file in MB (default: {FULL_MB:g} MB times --size)")
    p.add_argument("--no-files", action="store_true", help="skip the files section (textFile, saveAsTextFile)")
    p.add_argument("--out", default=RESULTS_DIR, help="directory for the JSON (and PNG) of this run")
    p.add_argument("--no-chart", action="store_true", help="do not write the PNG chart")
    p.add_argument("--quiet", action="store_true", help="print only the tables")
    p.add_argument("--memory", action="store_true",
                   help="also run the memory section: big by-key jobs with a task budget and in memory")
    p.add_argument("--memory-only", action="store_true", help="run only the memory section")
    p.add_argument("--memory-records", default="10000000,20000000", help="record counts of the memory section")
    p.add_argument("--memory-masters", default="local,local-cluster[2]", help="executors of the memory section")
    p.add_argument("--memory-workloads", default=",".join(memory.WORKLOADS),
                   help=f"from {', '.join(memory.WORKLOADS)}")
    p.add_argument("--memory-budget", default="256m", help="OKPLAN_TASK_MEMORY of the spilling runs")
    args = p.parse_args(argv)
    for name in _csv(args.engines):
        if name not in ENGINE_NAMES:
            p.error(f"unknown engine {name!r}; choose from {', '.join(ENGINE_NAMES)}")
    for name in _csv(args.workloads):
        if name not in WORKLOADS:
            p.error(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    for name in _csv(args.micro):
        if name not in MICRO:
            p.error(f"unknown micro-benchmark {name!r}; choose from {', '.join(MICRO)}")
    try:
        args.scale = SIZES[args.size] if args.size in SIZES else float(args.size)
    except ValueError:
        p.error(f"--size must be one of {', '.join(SIZES)} or a number, got {args.size!r}")
    args.overrides = {}
    for item in args.records:
        wl, _, n = item.partition("=")
        if wl not in WORKLOADS or not n:
            p.error(f"--records expects WORKLOAD=N, got {item!r}")
        args.overrides[wl] = int(float(n))
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    for name in _csv(args.memory_workloads):
        if name not in memory.WORKLOADS:
            p.error(f"unknown memory workload {name!r}; choose from {', '.join(memory.WORKLOADS)}")
    if args.memory_only:
        args.memory = True
        args.workloads = args.engines = ""
        args.no_micro = True
    return args


def _log(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


def _logged(args: argparse.Namespace, r: RunResult) -> RunResult:
    if r.status not in ("ok", "skipped"):
        _log(args, f"  {r.engine} / {r.workload}: {r.status}: {r.note}")
    return r


def run_suite(args: argparse.Namespace) -> dict[str, Any]:
    """Run the selected workloads on the selected engines and micro-benchmarks; return the run's
    JSON payload (also what the tables are printed from)."""
    started = dt.datetime.now(dt.timezone.utc)
    workloads = _csv(args.workloads)
    engine_names = _csv(args.engines)
    inputs: dict[str, tuple[int, Any, Any]] = {}
    for name in workloads:
        wl = WORKLOADS[name]
        n = args.overrides.get(name, wl.records(args.scale))
        inp = wl.make_input(n)
        _log(args, f"reference answer of {name} ({n:,} records) in plain Python ...")
        inputs[name] = (n, inp, wl.python(inp))

    results: list[RunResult] = []
    engines_info: dict[str, dict[str, Any]] = {}
    available: list[Engine] = []
    for name in engine_names:
        engine: Engine = make_engine(name, args.cores)
        ok, note = engine.available()
        engines_info[name] = {"available": ok, "note": note, "version": engine.version() if ok else None}
        if ok:
            available.append(engine)
        else:
            _log(args, f"engine {name}: skipped ({note})")
    if args.order == "engine":
        for engine in available:
            try:
                reset_peak()
                engine.start()
                for wl_name in workloads:
                    n, inp, ref = inputs[wl_name]
                    _log(args, f"{engine.name} / {wl_name} ...")
                    results.append(_logged(args, run_one(engine, WORKLOADS[wl_name], inp, ref, n, args.partitions,
                                                         args.repeat, args.warmup)))
                engines_info[engine.name]["peak_rss"] = engine_peaks(engine)
            finally:
                engine.stop()
    else:
        started_engines: list[Engine] = []
        try:
            reset_peak()
            for engine in available:
                engine.start()
                started_engines.append(engine)
            for wl_name in workloads:
                n, inp, ref = inputs[wl_name]
                _log(args, f"{wl_name} on {', '.join(e.name for e in available)} (interleaved) ...")
                for r in run_interleaved(available, WORKLOADS[wl_name], inp, ref, n, args.partitions,
                                         args.repeat, args.warmup):
                    results.append(_logged(args, r))
            for engine in available:
                # the client process ran every in-process engine: its peak is theirs together
                engines_info[engine.name]["peak_rss"] = engine_peaks(engine)
                engines_info[engine.name]["client_shared"] = True
        finally:
            for engine in started_engines:
                engine.stop()

    micro_rows: list[dict[str, Any]] = []
    if not args.no_micro and _csv(args.micro):
        _log(args, "micro-benchmarks ...")
        micro_rows = run_micro(_csv(args.micro))

    files_rows: list[dict[str, Any]] = []
    if not args.no_files:
        megabytes = args.files_mb if args.files_mb is not None else FULL_MB * args.scale
        files_rows = run_files(engine_names, megabytes, args.cores, args.repeat, args.warmup, lambda m: _log(args, m))
    memory_rows: list[dict[str, Any]] = []
    if args.memory:
        memory_rows = memory.run_section(_csv(args.memory_workloads),
                                         [int(float(n)) for n in _csv(args.memory_records)],
                                         _csv(args.memory_masters), args.memory_budget, lambda s: _log(args, s))

    return {
        "schema": 1,
        "started": started.isoformat(timespec="seconds"),
        "seconds": (dt.datetime.now(dt.timezone.utc) - started).total_seconds(),
        "machine": machine_info(),
        "versions": versions(),
        "args": {"size": args.size, "scale": args.scale, "records": args.overrides, "engines": engine_names,
                 "workloads": workloads, "repeat": args.repeat, "warmup": args.warmup,
                 "partitions": args.partitions, "cores": args.cores, "order": args.order},
        "engines": engines_info,
        "workloads": {w: {"description": WORKLOADS[w].description, "records": inputs[w][0]} for w in workloads},
        "results": [r.as_dict() for r in results],
        "optimizer": report.optimizer_rows(results, workloads),
        "adaptive": report.adaptive_rows(results, workloads),
        "reuse": report.reuse_rows(results, workloads),
        "cores": report.cores_rows(results, workloads),
        "micro": micro_rows,
        "files": files_rows,
        "memory": memory_rows,
        "_results": results,   # dropped before writing: the objects the tables are printed from
    }


def render(payload: dict[str, Any]) -> str:
    """All tables of a run, as printed on the terminal."""
    results: list[RunResult] = payload["_results"]
    workloads, engines = payload["args"]["workloads"], payload["args"]["engines"]
    m = payload["machine"]
    parts = [f"okplan benchmarks  {payload['started']}  {m['cpu']} ({m['cpus']} cpus, {m['memory_gb']} GB)  "
             f"commit {m['git_commit']}{' (dirty)' if m['git_dirty'] else ''}  size {payload['args']['size']}, "
             f"{payload['args']['partitions']} partitions, median of {payload['args']['repeat']}", ""]
    skipped = [f"- {k}: {v['note']}" for k, v in payload["engines"].items() if not v["available"]]
    if skipped:
        parts += ["Engines skipped:", *skipped, ""]
    parts += ["## Workloads", report.results_table(results, workloads, engines), ""]
    stages = report.stages_table([r for r in results if r.engine not in (
        "okplan-local-nopt", "okplan-local-noadapt", "okplan-local[2]-noadapt", "okplan-cluster-noadapt",
        "okplan-local-noreuse", "okplan-cluster-noreuse")])
    if stages.count("\n") > 1:
        parts += ["## okplan per stage (median run)", stages, ""]
    if payload["optimizer"]:
        parts += ["## Optimizer on / off (okplan local)", report.optimizer_table(payload["optimizer"]), ""]
    if payload.get("adaptive"):
        parts += ["## Adaptive planning on / off (broadcast join, skew split, coalescing; per executor)",
                  report.optimizer_table(payload["adaptive"], "adaptive"), ""]
    if payload.get("reuse"):
        parts += ["## Shuffle reuse on / off (OKPLAN_REUSE_SHUFFLES)", report.reuse_table(payload["reuse"]), ""]
    if payload.get("cores"):
        parts += ["## Every core: local[2] against local[1] (in-process)", report.cores_table(payload["cores"]), ""]
    if payload.get("files"):
        parts += ["## Files (textFile + word count, saveAsTextFile)", files_table(payload["files"]), ""]
    if payload["micro"]:
        parts += ["## Components against their limits", report.micro_table(payload["micro"]), ""]
    if any(info.get("peak_rss") for info in payload["engines"].values()):
        parts += ["## Peak memory per process", report.memory_table(payload["engines"]), ""]
    if payload.get("memory"):
        parts += ["## Memory: task budget against in memory (peak RSS per process)",
                  memory.section_table(payload["memory"]), ""]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    payload = run_suite(args)
    print(render(payload))
    results = payload.pop("_results")
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = os.path.join(args.out, f"{stamp}-{payload['machine']['hostname'] or 'host'}")
    report.write_json(base + ".json", payload)
    print(f"wrote {base}.json")
    if not args.no_chart:
        chart = report.write_chart(base + ".png", results, payload["args"]["workloads"],
                                   payload["args"]["engines"])
        print(f"wrote {chart}" if chart else "no chart (matplotlib is not installed)")
    bad = [r for r in results if r.status in ("wrong", "error")] + [r for r in payload["files"] if r["status"] != "ok"]
    return 1 if bad else 0
