"""Count HTTP status codes in a folder of plain and gzipped access logs, and save the counts.

    python examples/logs.py                                  # makes a small sample folder, runs locally
    python examples/logs.py local-cluster[2]                 # the same on Redis + master + 2 workers
    python examples/logs.py local /var/log/nginx out/        # your own logs (*.log and *.log.gz), your output

Workers read their own splits of the files; the output is a directory of part files plus ``_SUCCESS``.
"""

from __future__ import annotations

import gzip
import os
import random
import sys
import tempfile
from operator import add

from okplan import Context

STATUSES = (200, 200, 200, 200, 200, 301, 304, 404, 404, 500)
PATHS = ("/", "/index.html", "/api/items", "/login", "/static/app.js", "/favicon.ico")


def make_sample_logs(folder: str, files: int = 6, lines: int = 2_000, seed: int = 1) -> None:
    """Common Log Format lines: half the files plain ``.log``, half ``.log.gz``."""
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(files):
        rows = [f'10.0.{rng.randrange(256)}.{rng.randrange(256)} - - [02/Dec/2026:04:{j % 60:02d}:00 +0000] '
                f'"GET {rng.choice(PATHS)} HTTP/1.1" {rng.choice(STATUSES)} {rng.randrange(100, 9000)}'
                for j in range(lines)]
        data = ("\n".join(rows) + "\n").encode()
        name = os.path.join(folder, f"access-{i}.log")
        if i % 2:
            with gzip.open(name + ".gz", "wb") as f:
                f.write(data)
        else:
            with open(name, "wb") as f:
                f.write(data)


def status_of(line: str) -> str | None:
    """The status field of a Common Log Format line (the first field after the quoted request)."""
    _, _, rest = line.rpartition('" ')
    fields = rest.split()
    return fields[0] if fields and fields[0].isdigit() else None


def count_statuses(ctx: Context, folder: str, output: str) -> list[tuple[str, int]]:
    logs = ctx.textFile(f"{folder}/*.log,{folder}/*.log.gz")
    counts = (logs.map(status_of)
              .filter(lambda s: s is not None)
              .map(lambda s: (s, 1))
              .reduceByKey(add)
              .sortByKey()
              .cache())
    counts.map(lambda kv: f"{kv[0]}\t{kv[1]}").saveAsTextFile(output, overwrite=True)
    result = counts.collect()
    counts.unpersist()
    return result


def main(master: str = "local", folder: str | None = None, output: str | None = None) -> list[tuple[str, int]]:
    with tempfile.TemporaryDirectory() as scratch:
        if folder is None:
            folder = os.path.join(scratch, "logs")
            make_sample_logs(folder)
        output = output or os.path.join(scratch, "status-counts")
        with Context(master) as ctx:
            result = count_statuses(ctx, folder, output)
        print(f"status counts of {folder} ({master}):")
        for status, n in result:
            print(f"  {status}  {n:>7,}")
        print(f"saved to {output}: {sorted(os.listdir(output)) if os.path.isdir(output) else '(remote)'}")
        return result


if __name__ == "__main__":
    main(*sys.argv[1:4])
