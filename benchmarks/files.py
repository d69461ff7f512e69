"""The files section: ``textFile`` + word count over a generated text file (about 200 MB at full size),
the same file gzipped (one file: one partition, as gzip cannot be split) and gzipped in four parts, on
okplan local and local-cluster[N], as MB/s next to plain Python reading and counting the same file in
one process; then ``saveAsTextFile`` of the counts and of every line (a copy: read and write).

Every engine's word counts are checked against plain Python's, as in the workload tables.
"""

from __future__ import annotations

import gzip
import os
import random
import shutil
import statistics
import tempfile
import time
from itertools import chain
from operator import add
from typing import Any, Callable

from .workloads import make_lines, py_reduce_by_key, split_line, word_one

#: the text file's size at ``--size full``
FULL_MB = 200.0
#: distinct lines the file is made of (shuffled block after block, so no two blocks read alike)
BASE_LINES = 20_000

ENGINES = {"python": None, "okplan-local": "local", "okplan-cluster": "local-cluster[{cores}]"}


def make_inputs(folder: str, megabytes: float, seed: int = 7) -> dict[str, str]:
    """``text``: one file of about ``megabytes``; ``gzip``: the same, gzipped; ``gzip-4``: the same lines
    gzipped in four part files. Returns input name -> path (a file or a glob)."""
    rng = random.Random(seed)
    target = int(megabytes * 1024 * 1024)
    base = make_lines(max(100, min(BASE_LINES, target // 45)))  # about 45 bytes a line
    text = os.path.join(folder, "words.txt")
    written = 0
    with open(text, "w", encoding="utf-8") as f:
        while written < target:
            rng.shuffle(base)
            block = "\n".join(base) + "\n"
            f.write(block)
            written += len(block)
    paths = {"text": text, "gzip": text + ".gz"}
    with open(text, "rb") as src, gzip.open(paths["gzip"], "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    parts = os.path.join(folder, "parts")
    os.makedirs(parts)
    size = os.path.getsize(text)
    with open(text, "rb") as src:
        done = 0
        for i in range(4):
            # streamed: the same lines, cut into four parts of about a quarter of the bytes each
            with gzip.open(os.path.join(parts, f"part-{i}.txt.gz"), "wb", compresslevel=1) as dst:
                for line in src:
                    dst.write(line)
                    done += len(line)
                    if i < 3 and done >= (i + 1) * size // 4:
                        break
    paths["gzip-4"] = os.path.join(parts, "*.gz")
    return paths


def python_wordcount(path: str) -> dict:
    """Plain Python in one process: stream the file(s) line by line through the same user functions."""
    import glob

    counts: dict = {}
    for name in sorted(glob.glob(path)):
        opener: Callable[..., Any] = gzip.open if name.endswith(".gz") else open
        with opener(name, "rt", encoding="utf-8") as f:
            part = py_reduce_by_key(map(word_one, chain.from_iterable(map(split_line, f))), add)
        for k, v in part.items():
            counts[k] = counts.get(k, 0) + v
    return counts


def okplan_wordcount(ctx: Any, path: str) -> tuple[dict, Any]:
    counts = ctx.textFile(path).flatMap(split_line).map(word_one).reduceByKey(add)
    return counts.collectAsMap(), counts


def _median_time(fn: Callable[[], Any], repeat: int, warmup: int) -> tuple[float, list[float], Any]:
    samples, answer = [], None
    for i in range(warmup + repeat):
        t0 = time.perf_counter()
        answer = fn()
        if i >= warmup:
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples), samples, answer


def run_files(engines: list[str], megabytes: float, cores: int, repeat: int, warmup: int,
              log: Callable[[str], None] = lambda m: None) -> list[dict[str, Any]]:
    """One row per (engine, job): seconds (median), MB/s of input, ratio to plain Python, answer check."""
    from okplan import Context

    chosen = [e for e in ENGINES if e in engines]
    rows: list[dict[str, Any]] = []
    folder = tempfile.mkdtemp(prefix="okplan-bench-files-")
    try:
        log(f"files: generating {megabytes:g} MB of text (and gzipped) in {folder} ...")
        paths = make_inputs(folder, megabytes)
        size_mb = os.path.getsize(paths["text"]) / 2**20
        reference = python_wordcount(paths["text"])
        python_s: dict[str, float] = {}
        for engine in chosen:
            ctx = None if ENGINES[engine] is None else Context(ENGINES[engine].format(cores=cores))
            try:
                for name, path in paths.items():
                    log(f"files: {engine} / wordcount {name} ...")
                    if ctx is None:
                        med, samples, answer = _median_time(lambda: python_wordcount(path), repeat, warmup)
                        python_s[name] = med
                        parts = 1
                    else:
                        med, samples, (answer, _) = _median_time(lambda: okplan_wordcount(ctx, path), repeat, warmup)
                        parts = ctx.textFile(path).getNumPartitions()
                    rows.append(_row(engine, f"wordcount {name}", size_mb, med, samples, parts,
                                     "ok" if answer == reference else "wrong", python_s.get(name)))
                if ctx is not None:
                    rows += _save_rows(ctx, engine, paths["text"], folder, size_mb, repeat, warmup, log)
            finally:
                if ctx is not None:
                    ctx.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def _save_rows(ctx: Any, engine: str, text: str, folder: str, size_mb: float, repeat: int, warmup: int,
               log: Callable[[str], None]) -> list[dict[str, Any]]:
    out = os.path.join(folder, f"out-{engine}")
    _, counts = okplan_wordcount(ctx, text)
    log(f"files: {engine} / saveAsTextFile ...")
    med, samples, _ = _median_time(lambda: counts.saveAsTextFile(out + "-counts", overwrite=True), repeat, warmup)
    rows = [_row(engine, "wordcount + saveAsTextFile(counts)", size_mb, med, samples, counts.getNumPartitions(),
                 "ok" if os.path.exists(os.path.join(out + "-counts", "_SUCCESS")) else "wrong", None)]
    lines = ctx.textFile(text)
    med, samples, _ = _median_time(lambda: lines.saveAsTextFile(out + "-copy", overwrite=True), repeat, warmup)
    copied = sum(os.path.getsize(os.path.join(out + "-copy", n)) for n in os.listdir(out + "-copy"))
    rows.append(_row(engine, "textFile -> saveAsTextFile (copy)", size_mb, med, samples, lines.getNumPartitions(),
                     "ok" if copied == os.path.getsize(text) else "wrong", None))
    return rows


def _row(engine: str, job: str, size_mb: float, seconds: float, samples: list[float], partitions: int,
         status: str, python_seconds: float | None) -> dict[str, Any]:
    return {"engine": engine, "job": job, "input_mb": round(size_mb, 2), "seconds": seconds, "samples": samples,
            "mb_per_s": size_mb / seconds if seconds else None, "partitions": partitions, "status": status,
            "vs_python": (python_seconds / seconds) if python_seconds and seconds else None}


def files_table(rows: list[dict[str, Any]]) -> str:
    """The files section as a markdown table (speed-up over plain Python: above 1.00x is faster)."""
    from .report import fmt_seconds, table

    body = [[r["job"], r["engine"], f"{r['input_mb']:.1f}", r["partitions"], fmt_seconds(r["seconds"]),
             f"{r['mb_per_s']:.1f}" if r["mb_per_s"] else "-",
             f"{r['vs_python']:.2f}x" if r["vs_python"] else "-", r["status"]] for r in rows]
    return table(["job", "engine", "input MB", "partitions", "median", "MB/s", "speed-up vs python", "answer"],
                 body, "llrrrrrl")
