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


class Cell:
    """One (workload, engine) cell being measured: ``open`` prepares it, each ``sample`` runs the workload
    once (``wl.inner`` times for tiny workloads) and checks the answer, ``close`` gives the result.

    Splitting a cell into samples lets the suite interleave engines: sample ``i`` of every engine runs
    before sample ``i + 1`` of any, so a machine that slows down or warms up during the run biases no
    engine in particular (timing every sample of one engine before the next made the first okplan
    engine after ``python`` 10-60% slower than the same engine measured later)."""

    def __init__(self, engine: Engine, wl: Workload, inp: Any, reference: Any, records: int, parts: int) -> None:
        self.engine, self.wl, self.inp, self.parts = engine, wl, inp, parts
        self.expected = wl.normalize(reference)
        self.reference = reference
        self.result = RunResult(wl.name, engine.name, records, parts)
        self.state: Any = None
        self.live = False
        self._runs: list[tuple[float, list, float]] = []

    def open(self) -> bool:
        """Prepare the engine's input; False when this cell has nothing more to run."""
        if not self.engine.supports(self.wl):
            self.result.note = f"{self.engine.name} has no form of {self.wl.name}"
            return False
        try:
            self.state = self.engine.prepare(self.wl, self.inp, self.parts)
            self.live = True
        except Exception as exc:  # noqa: BLE001 - one failing engine must not end the whole run
            self._fail(exc)
        return self.live

    def sample(self, timed: bool) -> None:
        """Run the workload once (a warm-up when not ``timed``); a wrong answer or error ends the cell."""
        if not self.live:
            return
        try:
            inner: list[tuple[float, list, float]] = []
            for _ in range(self.wl.inner):
                seconds, cpu, answer, jobs = _timed(lambda: self.engine.run(self.wl, self.state, self.parts))
                if self.wl.normalize(answer) != self.expected:
                    self.result.status = "wrong"
                    self.result.note = (f"answer differs from plain Python: {_short(answer)} != "
                                        f"{_short(self.reference)}")
                    self.live = False
                    return
                inner.append((seconds, jobs, cpu))
            if timed:
                inner.sort(key=lambda r: r[0])
                self._runs.append(inner[len(inner) // 2])
        except Exception as exc:  # noqa: BLE001
            self._fail(exc)

    def close(self) -> RunResult:
        """Release the engine's prepared input; the cell's result."""
        if self.live and self._runs:
            runs = self._runs
            self.result.samples = [s for s, _, _ in runs]
            if self.engine.in_process:
                self.result.cpu_samples = [c for _, _, c in runs]
            median_run = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
            self.result.jobs = [job.as_dict() for job in median_run[1]]
            self.result.status = "ok"
        if self.state is not None:
            try:
                self.engine.finish(self.wl, self.state)
            except Exception:  # noqa: BLE001
                pass
            self.state = None
        self.live = False
        return self.result

    def _fail(self, exc: Exception) -> None:
        self.result.status = "error"
        self.result.note = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        self.live = False


def run_one(engine: Engine, wl: Workload, inp: Any, reference: Any, records: int, parts: int,
            repeat: int, warmup: int) -> RunResult:
    """Warm up, then ``repeat`` timed samples of ``wl`` on ``engine``; checks every answer."""
    cell = Cell(engine, wl, inp, reference, records, parts)
    if cell.open():
        for i in range(warmup + repeat):
            cell.sample(timed=i >= warmup)
    return cell.close()


def run_interleaved(engines: list[Engine], wl: Workload, inp: Any, reference: Any, records: int, parts: int,
                    repeat: int, warmup: int) -> list[RunResult]:
    """Like ``run_one`` for every engine at once: each round runs one sample of every engine, starting
    with a different engine each round, so no engine always runs first after another's garbage."""
    cells = [Cell(e, wl, inp, reference, records, parts) for e in engines]
    try:
        live = [c for c in cells if c.open()]
        for i in range(warmup + repeat):
            shift = i % len(live) if live else 0
            for cell in live[shift:] + live[:shift]:
                cell.sample(timed=i >= warmup)
    finally:
        results = [c.close() for c in cells]
    return results


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) < 80 else text[:77] + "..."
