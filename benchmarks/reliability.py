"""``python -m benchmarks.reliability``: trials, right answers and time to recover when user code or the
outside world kills cluster processes (the figures of issue 13's note).

Scenarios, each repeated ``--trials`` times on one ``local-cluster[2]``:

- ``os._exit`` / ``SIGKILL`` / ``segfault`` in a task on every attempt: the job must fail with
  ``TaskProcessDiedError`` (a right answer), then a normal job must succeed on both workers; the time
  is from the start of the failing job to the end of the normal one;
- ``kill once``: a task kills its process on its first attempt only; the answer must be right;
- ``kill slot``: ``kill -9`` of a task process in the middle of a job; the answer must be right;
- ``kill worker``: ``kill -9`` of a worker (supervisor) between jobs; the time is until a job runs on
  two workers again.

Prints a table and writes JSON next to the other results.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import tempfile
import threading
import time
from operator import add
from typing import Any, Callable

from okplan import Context, TaskProcessDiedError


def _exit(x: int) -> int:
    os._exit(1)


def _sigkill(x: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)
    return x


def _segfault(x: int) -> int:
    ctypes.string_at(0)
    return x


def _two_workers(ctx: Context) -> bool:
    got = ctx.range(0, 400, numSlices=8).map(lambda x: (x % 5, x)).reduceByKey(add, 2).collectAsMap()
    assert got == {k: sum(range(k, 400, 5)) for k in range(5)}
    return len(ctx.lastJobMetrics().tasks_per_worker) == 2


def _crash_trial(ctx: Context, kill: Callable[[int], int]) -> tuple[bool, float]:
    t0 = time.perf_counter()
    try:
        ctx.parallelize(range(40), 4).map(lambda x: kill(x) if x == 13 else x).collect()
        right = False
    except TaskProcessDiedError:
        right = True
    right = _two_workers(ctx) and right
    return right, time.perf_counter() - t0


def _kill_once_trial(ctx: Context) -> tuple[bool, float]:
    marker = tempfile.mktemp(prefix="okplan-reliability-")

    def once(x: int) -> int:
        if x == 13 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return x

    t0 = time.perf_counter()
    right = ctx.parallelize(range(40), 4).map(once).sum() == sum(range(40))
    os.unlink(marker)
    return right, time.perf_counter() - t0


def _kill_slot_trial(ctx: Context) -> tuple[bool, float]:
    import psutil

    victim = psutil.Process(ctx.executor.worker_pids()[0]).children()[0].pid
    threading.Timer(0.15, os.kill, (victim, signal.SIGKILL)).start()

    def slow(i: int, it: Any) -> Any:
        time.sleep(0.3)
        return it

    t0 = time.perf_counter()
    right = ctx.range(0, 1000, numSlices=4).mapPartitionsWithIndex(slow).sum() == sum(range(1000))
    return right, time.perf_counter() - t0


def _kill_worker_trial(ctx: Context) -> tuple[bool, float]:
    ex = ctx.executor
    victim = ex.worker_pids()[0]
    t0 = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if victim not in ex.worker_pids() and len(ex.worker_pids()) == 2 and ex.hello()["workers"] == 2 \
                and _two_workers(ctx):
            return True, time.perf_counter() - t0
        time.sleep(0.05)
    return False, time.perf_counter() - t0


SCENARIOS: dict[str, Callable[[Context], tuple[bool, float]]] = {
    "os._exit every attempt": lambda ctx: _crash_trial(ctx, _exit),
    "SIGKILL every attempt": lambda ctx: _crash_trial(ctx, _sigkill),
    "segfault every attempt": lambda ctx: _crash_trial(ctx, _segfault),
    "os._exit once": _kill_once_trial,
    "kill -9 of a task process mid-job": _kill_slot_trial,
    "kill -9 of a worker": _kill_worker_trial,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.reliability", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = p.parse_args(argv)
    rows = []
    with Context("local-cluster[2]", heartbeat_timeout=2.0) as ctx:
        _two_workers(ctx)
        for name, trial in SCENARIOS.items():
            times, right = [], 0
            for _ in range(args.trials):
                ok, seconds = trial(ctx)
                right += ok
                times.append(seconds)
            times.sort()
            rows.append({"scenario": name, "trials": args.trials, "right": right,
                         "median_s": times[len(times) // 2], "max_s": times[-1]})
            print(f"{name:36} {right:3}/{args.trials:<3} right   recover median {rows[-1]['median_s']:.2f} s, "
                  f"max {rows[-1]['max_s']:.2f} s", flush=True)
        restarts = ctx.executor.worker_restarts()
    print(f"worker restarts: {restarts}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"reliability-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump({"rows": rows, "worker_restarts": restarts}, f, indent=2)
    print(f"wrote {path}")
    return 0 if all(r["right"] == r["trials"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
