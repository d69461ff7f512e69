"""The engines a workload runs on, all behind one small interface.

``python`` runs the plain-Python form of a workload; the okplan engines and PySpark run its RDD form
on their own context; Dask Bag runs its bag form. Engines that are not installed or do not start are
reported as unavailable with a note instead of failing the run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from .workloads import Workload

#: the repository root, so PySpark's and okplan's worker processes can import ``benchmarks``
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ENGINE_NAMES = ("python", "okplan-local", "okplan-local[2]", "okplan-local-nopt", "okplan-local-noadapt",
                "okplan-local[2]-noadapt", "okplan-local-noreuse", "okplan-cluster", "okplan-cluster-noadapt",
                "okplan-cluster-noreuse", "pyspark", "dask")
#: workloads the engines without shuffle reuse run: the one reuse is for (notebook) and one-shot
#: shuffles, which show what keeping an output for reuse costs when nothing reuses it
NOREUSE_WORKLOADS = {"okplan-local-noreuse": ("notebook", "wordcount", "twoshuffle", "groupsort"),
                     "okplan-cluster-noreuse": ("notebook",)}
#: workloads the engines without adaptive planning run besides okplan-local-noadapt (which runs all):
#: those adaptive planning changes (a broadcast join, a skew split) and one it leaves alone
NOADAPT_WORKLOADS = {"okplan-local[2]-noadapt": ("join", "skewjoin", "groupsort"),
                     "okplan-cluster-noadapt": ("join", "skewjoin", "groupsort")}
DEFAULT_ENGINES = ENGINE_NAMES


def _export_repo_path() -> None:
    """Worker processes (PySpark's Python workers, okplan's cluster workers, Dask's pool) unpickle
    the user functions by module reference, so they need this repository on their path."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if _REPO_ROOT not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [_REPO_ROOT, *paths] if p)


class Engine:
    """Base engine: ``start``/``stop`` around a run, ``run`` one workload once.

    ``run`` returns ``(answer, jobs)``: the workload's answer and, for okplan, the ``JobMetrics`` of
    every job the workload ran (a workload can run several: ``sortByKey`` samples first).
    """

    name = "engine"
    #: which form of a workload this engine runs: "python", "rdd" or "bag"
    form = "python"
    note = ""
    #: all the engine's work happens in this process's threads, so this process's CPU time is its cost
    in_process = False

    def available(self) -> tuple[bool, str]:
        return True, ""

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def supports(self, wl: Workload) -> bool:
        return getattr(wl, self.form) is not None

    def prepare(self, wl: Workload, inp: Any, parts: int) -> Any:
        """Untimed preparation (caching pre-partitioned inputs); returns what ``run`` takes."""
        return inp

    def finish(self, wl: Workload, state: Any) -> None:
        pass

    def run(self, wl: Workload, state: Any, parts: int) -> tuple[Any, list]:
        raise NotImplementedError

    def version(self) -> str | None:
        return None


class PythonEngine(Engine):
    """Plain Python in this process: the same user functions through builtin map/filter/dict loops."""

    name = "python"
    form = "python"
    in_process = True

    def run(self, wl: Workload, state: Any, parts: int) -> tuple[Any, list]:
        return wl.python(state), []

    def version(self) -> str:
        return sys.version.split()[0]


class _JobRecorder:
    """Keeps the ``JobMetrics`` of every job an okplan executor runs (``lastJobMetrics`` only keeps
    the last one, and a workload may run several)."""

    def __init__(self, executor: Any):
        self.jobs: list = []
        original = executor.run

        def run(*args: Any, **kwargs: Any):
            try:
                yield from original(*args, **kwargs)
            finally:
                if executor.last_metrics is not None:
                    self.jobs.append(executor.last_metrics)

        executor.run = run  # instance attribute: only this context's executor is wrapped

    def take(self) -> list:
        jobs, self.jobs = self.jobs, []
        return jobs


class OkplanEngine(Engine):
    """okplan on ``master`` (``local`` or ``local-cluster[N]``), optimizer on or off, adaptive planning on
    or off, shuffle reuse on or off (then only on ``workloads``, when given)."""

    form = "rdd"

    def __init__(self, name: str, master: str, optimize: bool = True, adaptive: bool = True, reuse: bool = True,
                 workloads: tuple[str, ...] | None = None):
        self.name = name
        self.master = master
        self.optimize = optimize
        self.in_process = master == "local"
        self.adaptive = adaptive
        self.reuse = reuse
        self.workloads = workloads
        self.ctx: Any = None
        self.recorder: _JobRecorder | None = None

    def supports(self, wl: Workload) -> bool:
        return super().supports(wl) and (self.workloads is None or wl.name in self.workloads)

    def available(self) -> tuple[bool, str]:
        if self.master.startswith("local-cluster"):
            if importlib.util.find_spec("okplan.exec.cluster") is None or \
                    importlib.util.find_spec("okplan.exec.cluster.launcher") is None:
                return False, "okplan.exec.cluster.launcher is not importable (cluster executor not built yet)"
            try:
                self.start()
                answer = self.ctx.parallelize(range(100), 2).map(lambda x: x + 1).sum()
                if answer != 5050:
                    return False, f"local-cluster smoke job returned {answer!r}, expected 5050"
            except Exception as exc:  # noqa: BLE001 - any failure means: skip with the reason
                self.stop()
                return False, f"local-cluster did not work: {type(exc).__name__}: {exc}"
        return True, ""

    def start(self) -> None:
        if self.ctx is None:
            from okplan import Context

            _export_repo_path()
            self.ctx = Context(self.master, appName="okplan-bench", optimize=self.optimize, adaptive=self.adaptive,
                               reuse_shuffles=self.reuse)
            self.recorder = _JobRecorder(self.ctx.executor)

    def stop(self) -> None:
        if self.ctx is not None:
            self.ctx.stop()
            self.ctx = None

    def prepare(self, wl: Workload, inp: Any, parts: int) -> Any:
        state = wl.rdd_setup(self.ctx, inp, parts) if wl.rdd_setup else inp
        if self.recorder is not None:
            self.recorder.take()   # the setup's jobs are not part of the measured run
        return state

    def finish(self, wl: Workload, state: Any) -> None:
        if wl.rdd_teardown:
            wl.rdd_teardown(state)

    def run(self, wl: Workload, state: Any, parts: int) -> tuple[Any, list]:
        assert self.recorder is not None
        self.recorder.take()
        answer = wl.rdd(self.ctx, state, parts)
        return answer, self.recorder.take()

    def version(self) -> str:
        import okplan

        return okplan.__version__


class PySparkEngine(Engine):
    """PySpark ``local[N]`` (a JVM plus reused Python workers)."""

    name = "pyspark"
    form = "rdd"

    def __init__(self, cores: int = 2):
        self.cores = cores
        self.sc: Any = None

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec("pyspark") is None:
            return False, "pyspark is not installed (pip install pyspark; needs Java 17)"
        return True, ""

    def start(self) -> None:
        if self.sc is None:
            _export_repo_path()
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
            from pyspark import SparkConf, SparkContext

            conf = (SparkConf().setMaster(f"local[{self.cores}]").setAppName("okplan-bench")
                    .set("spark.ui.enabled", "false").set("spark.ui.showConsoleProgress", "false")
                    .set("spark.driver.memory", "2g"))
            self.sc = SparkContext(conf=conf)
            self.sc.setLogLevel("ERROR")

    def stop(self) -> None:
        if self.sc is not None:
            self.sc.stop()
            self.sc = None

    def prepare(self, wl: Workload, inp: Any, parts: int) -> Any:
        return wl.rdd_setup(self.sc, inp, parts) if wl.rdd_setup else inp

    def finish(self, wl: Workload, state: Any) -> None:
        if wl.rdd_teardown:
            wl.rdd_teardown(state)

    def run(self, wl: Workload, state: Any, parts: int) -> tuple[Any, list]:
        return wl.rdd(self.sc, state, parts), []

    def version(self) -> str | None:
        import pyspark

        return pyspark.__version__


class DaskEngine(Engine):
    """Dask Bag on a process pool of ``workers`` processes, reused across runs."""

    name = "dask"
    form = "bag"

    def __init__(self, workers: int = 2):
        self.workers = workers
        self.pool: Any = None

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec("dask") is None or importlib.util.find_spec("dask.bag") is None:
            return False, "dask[bag] is not installed"
        try:
            import dask.bag  # noqa: F401
        except Exception as exc:  # noqa: BLE001
            return False, f"dask.bag does not import: {exc}"
        return True, ""

    def start(self) -> None:
        if self.pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            _export_repo_path()
            # fork: workers start with this process's imports and path, as Dask's own default pool
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"))

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    def run(self, wl: Workload, state: Any, parts: int) -> tuple[Any, list]:
        import dask.bag as db

        return wl.bag(db, state, parts).compute(scheduler="processes", pool=self.pool), []

    def version(self) -> str | None:
        import dask

        return dask.__version__


def make_engine(name: str, cores: int = 2) -> Engine:
    """The engine called ``name`` (see ``ENGINE_NAMES``); ``cores`` sets the peers' parallelism and the
    cluster's worker count."""
    if name == "python":
        return PythonEngine()
    if name == "okplan-local":
        return OkplanEngine(name, "local", True)
    if name == "okplan-local[2]":  # big jobs on 2 task processes (okplan-local is in-process, local[1])
        return OkplanEngine(name, "local[2]", True)
    if name == "okplan-local-nopt":
        return OkplanEngine(name, "local", False)
    if name == "okplan-local-noadapt":
        return OkplanEngine(name, "local", True, adaptive=False)
    if name == "okplan-local[2]-noadapt":
        return OkplanEngine(name, "local[2]", True, adaptive=False, workloads=NOADAPT_WORKLOADS[name])
    if name == "okplan-cluster-noadapt":
        return OkplanEngine(name, f"local-cluster[{cores}]", True, adaptive=False, workloads=NOADAPT_WORKLOADS[name])
    if name == "okplan-local-noreuse":
        return OkplanEngine(name, "local", reuse=False, workloads=NOREUSE_WORKLOADS[name])
    if name == "okplan-cluster":
        return OkplanEngine(name, f"local-cluster[{cores}]", True)
    if name == "okplan-cluster-noreuse":
        return OkplanEngine(name, f"local-cluster[{cores}]", reuse=False, workloads=NOREUSE_WORKLOADS[name])
    if name == "pyspark":
        return PySparkEngine(cores)
    if name == "dask":
        return DaskEngine(cores)
    raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINE_NAMES)}")
