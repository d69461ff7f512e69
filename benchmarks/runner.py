"""Runs workloads on engines: warm-up, timed repeats, medians, and the answer check."""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from .engines import Engine
from .workloads import Workload


@dataclass
class RunResult:
    """One (workload, engine) cell of the table."""

    workload: str
    engine: str
    records: int
    partitions: int
    #: seconds of each timed sample (a sample is the median of ``inner`` runs for tiny workloads)
    samples: list[float] = field(default_factory=list)
    #: "ok", "wrong" (answer differs from plain Python), "error", "skipped"
    status: str = "skipped"
    note: str = ""
    #: okplan only: per job, per stage metrics of the median sample
    jobs: list[dict] = field(default_factory=list)
    #: CPU seconds of this process for each sample, for engines that run in it (python, okplan-local):
    #: on a machine others load, CPU time moves far less than wall time
    cpu_samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["median"] = self.median
        d["min"] = min(self.samples) if self.samples else None
        d["cpu_median"] = self.cpu_median
        return d

    @property
    def cpu_median(self) -> float | None:
        return statistics.median(self.cpu_samples) if self.cpu_samples else None


def _timed(fn: Callable[[], tuple[Any, list]]) -> tuple[float, float, Any, list]:
    """Wall and process CPU seconds of ``fn()``, its answer and jobs."""
    # collect garbage left by the previous run first, so one run does not pay for another's garbage
    gc.collect()
    c0 = time.process_time()
    t0 = time.perf_counter()
    answer, jobs = fn()
    return time.perf_counter() - t0, time.process_time() - c0, answer, jobs


def run_one(engine: Engine, wl: Workload, inp: Any, reference: Any, records: int, parts: int,
            repeat: int, warmup: int) -> RunResult:
    """Warm up, then ``repeat`` timed samples of ``wl`` on ``engine``; checks every answer."""
    result = RunResult(wl.name, engine.name, records, parts)
    if not engine.supports(wl):
        result.note = f"{engine.name} has no form of {wl.name}"
        return result
    expected = wl.normalize(reference)
    state = None
    try:
        state = engine.prepare(wl, inp, parts)
        runs: list[tuple[float, list, float]] = []
        for i in range(warmup + repeat):
            inner: list[tuple[float, list, float]] = []
            for _ in range(wl.inner):
                seconds, cpu, answer, jobs = _timed(lambda: engine.run(wl, state, parts))
                if wl.normalize(answer) != expected:
                    result.status = "wrong"
                    result.note = f"answer differs from plain Python: {_short(answer)} != {_short(reference)}"
                    return result
                inner.append((seconds, jobs, cpu))
            if i >= warmup:
                inner.sort(key=lambda r: r[0])
                runs.append(inner[len(inner) // 2])
        result.samples = [s for s, _, _ in runs]
        if engine.in_process:
            result.cpu_samples = [c for _, _, c in runs]
        median_run = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        result.jobs = [job.as_dict() for job in median_run[1]]
        result.status = "ok"
    except Exception as exc:  # noqa: BLE001 - one failing engine must not end the whole run
        result.status = "error"
        result.note = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    finally:
        if state is not None:
            try:
                engine.finish(wl, state)
            except Exception:  # noqa: BLE001
                pass
    return result


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) < 80 else text[:77] + "..."
