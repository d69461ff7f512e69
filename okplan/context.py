"""``Context``: the entry point. Creates datasets; its ``session`` (okplan/session.py) plans and runs jobs."""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any, Callable, Iterable, Iterator

from . import _checks as chk
from .actions import PartitionAction
from .adaptive import adaptive_enabled, broadcast_threshold
from .query_stages import skew_factor, skew_threshold
from .broadcast import Broadcast
from .context_files import FileReadersMixin
from .dataset import DataSet, union_node
from .exec.accumulators import Accumulator
from .exec.factory import make_executor
from .exec.metrics import JobMetrics
from .log import ensure_configured
from .logical import nodes as L
from .logical.optimizer import Firing
from .logical.plan import LogicalPlan
from .physical.stage import PhysicalPlan
from .session import Session

#: the seed's default number of records per partition for ``dataSet``
SEED_BUFFER_SIZE = 10240
#: PySpark's largest batch when it ships a list to ``parallelize`` (its partitions hold whole batches)
PYSPARK_BATCH_SIZE = 1024


class Context(FileReadersMixin):
    """Where datasets come from and jobs run.

    ``master``: ``"local[*]"`` or ``"local[N]"``: N cores (``*``: all), big jobs on a pool of N task
    processes, small ones in this process (``pool_min_records``, ``pool_min_bytes`` set the threshold);
    ``"local[1]"`` or ``"local"``: every task in this process; ``"local-cluster[N]"`` (starts Redis, a
    master and N workers on this machine) or ``"tcp://host:port"`` (a running master); the default is
    ``OKPLAN_MASTER``, else ``"local[*]"``.
    ``optimize=False`` runs plans as written. ``profile=True`` (or ``OKPLAN_PROFILE=1``) times each
    operator inside fused stages, sampled, for ``explain(analyze=True)`` and ``getProfile()``.
    ``task_memory`` (e.g. ``"256m"``; default ``OKPLAN_TASK_MEMORY`` or 512m) is what one task may hold
    before it spills to disk under ``OKPLAN_LOCAL_DIR``. ``reuse_shuffles=False`` (or
    ``OKPLAN_REUSE_SHUFFLES=0``) makes later jobs run a finished shuffle's map side again instead of
    reusing its output (see ``okplan/shuffle_reuse.py``). ``adaptive=False`` (or ``OKPLAN_ADAPTIVE=0``)
    turns off adaptive planning: broadcast joins below ``broadcast_threshold`` (bytes or ``"10MB"``;
    default ``OKPLAN_BROADCAST_THRESHOLD``, else 10 MB; see ``okplan/adaptive.py``), coalescing of small
    reduce partitions and splitting of a join's skewed ones: over ``skew_factor`` times the median
    (``OKPLAN_SKEW_FACTOR``, 5) and over ``skew_threshold`` bytes (``OKPLAN_SKEW_THRESHOLD``, 1MB; see
    ``okplan/query_stages.py``).

    >>> with Context() as ctx:
    ...     ctx.parallelize(range(10)).map(lambda x: x * x).sum()
    285
    """

    def __init__(self, master: str | None = None, appName: str | None = None, optimize: bool = True,
                 profile: bool | None = None, **options: Any):
        if master is None:
            master = os.environ.get("OKPLAN_MASTER") or "local[*]"
        if not isinstance(master, str):
            raise TypeError(f"Context() expects a master string like 'local' or 'tcp://host:port', got {master!r}")
        ensure_configured()
        self.master = master
        self.appName = appName or "okplan"
        reuse_shuffles = options.pop("reuse_shuffles", None)
        adaptive = adaptive_enabled(options.pop("adaptive", None))
        threshold = broadcast_threshold(options.pop("broadcast_threshold", None))  # a bad value fails before any start
        skew = (skew_factor(options.pop("skew_factor", None)), skew_threshold(options.pop("skew_threshold", None)))
        self._executor = make_executor(master, **options)
        if profile is not None:
            self._executor.profile = bool(profile)
        if hasattr(self._executor, "app_name"):
            self._executor.app_name = self.appName
        #: owns this Context's jobs, caches and checkpoints (what DataSet and its actions call)
        self.session = Session(self._executor, optimize, reuse_shuffles, adaptive, threshold, *skew)
        self._checkpoint_dir: str | None = None
        self._side_files: dict[str, dict] = {}       # addFile/addPyFile: name -> {"sha", "py"}

    # -- lifecycle -------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the executor (and any servers ``local-cluster`` started) and drop cached data."""
        if not self.session.stopped:
            self._forget_side_files()
            self.session.stop()

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def defaultParallelism(self) -> int:
        """Partitions ``parallelize`` makes when not told (the executor's cores or worker slots)."""
        return self._executor.default_parallelism

    @property
    def executor(self) -> Any:
        return self._executor

    @property
    def uiWebUrl(self) -> str | None:
        """The URL of the cluster master's web dashboard (PySpark's ``sc.uiWebUrl``); None in-process.

        >>> Context("local-cluster[2]").uiWebUrl                    # doctest: +SKIP
        'http://127.0.0.1:40233/'
        >>> ctx.uiWebUrl is None
        True
        """
        return getattr(self._executor, "ui_web_url", None)

    # -- creating datasets -----------------------------------------------------------------------------
    def parallelize(self, c: Iterable, numSlices: int | None = None) -> DataSet:
        """A dataset of the records of ``c``, cut into ``numSlices`` partitions of consecutive records.

        Partitions are cut exactly where PySpark cuts them: PySpark ships a list in batches of
        ``min(len // numSlices, 1024)`` records and spreads whole batches over the partitions, so
        ``glom``, ``mapPartitions`` and ``zipWithUniqueId`` give the same answers on both.

        >>> ctx.parallelize([1, 2, 3, 4], 2).glom().collect()
        [[1, 2], [3, 4]]
        """
        chk.check_partitions(numSlices, "parallelize", "numSlices")
        if isinstance(c, range):
            return self.range(c.start, c.stop, c.step, numSlices)
        if isinstance(c, (str, bytes)) or not hasattr(c, "__iter__"):
            raise TypeError(f"parallelize() expects an iterable of records, got {type(c).__name__}")
        data = c if isinstance(c, list) else list(c)
        n = numSlices if numSlices is not None else self.defaultParallelism
        size = len(data)
        batch = max(1, min(size // n, PYSPARK_BATCH_SIZE))
        batches = -(-size // batch)
        slices = tuple(data[i * batches // n * batch:(i + 1) * batches // n * batch] for i in range(n))
        return DataSet(self, L.Source(slices=slices, callsite=chk.user_callsite()))

    def range(self, start: int, end: int | None = None, step: int = 1, numSlices: int | None = None) -> DataSet:
        """The integers of ``range(start, end, step)`` (``range(n)`` is ``0..n-1``), generated in the
        tasks, never shipped.

        >>> ctx.range(5).collect()
        [0, 1, 2, 3, 4]
        """
        if end is None:
            start, end = 0, start
        for v, name in ((start, "start"), (end, "end"), (step, "step")):
            chk.check_int(v, "range", name)
        if step == 0:
            raise ValueError("range() needs a non-zero step")
        chk.check_partitions(numSlices, "range", "numSlices")
        n = numSlices if numSlices is not None else self.defaultParallelism
        return DataSet(self, L.RangeSource(start=start, stop=end, step=step, slices=n, callsite=chk.user_callsite()))

    def emptyRDD(self) -> DataSet:
        """A dataset with no partitions and no records.

        >>> ctx.emptyRDD().count()
        0
        """
        return DataSet(self, L.Source(slices=(), callsite=chk.user_callsite()))

    def union(self, rdds: list[DataSet]) -> DataSet:
        """All records of all datasets, in order.

        >>> ctx.union([ctx.parallelize([1]), ctx.parallelize([2])]).collect()
        [1, 2]
        """
        rdds = list(rdds)
        if not rdds:
            raise ValueError("union() needs at least one dataset")
        for r in rdds:
            chk.check_dataset(r, "union", DataSet, self)
        if len(rdds) == 1:
            return rdds[0]
        return DataSet(self, union_node(tuple(r._node for r in rdds), chk.user_callsite()))

    def dataSet(self, data: Iterable | None = None, label: str | None = None, bufferSize: int | None = None,
                fromExisting: bool = False) -> DataSet:
        """The seed's constructor: ``bufferSize`` records per partition (default 10,240), ``label`` names
        the dataset and keeps its records under that name, so ``dataSet(label=..., fromExisting=True)``
        reopens it (from any client of the same cluster).

        >>> ctx.dataSet(ChainableList(range(1, 30)), label="sum", bufferSize=1).reduce(lambda x, y: x + y)
        435
        """
        if fromExisting:
            if not label:
                raise ValueError("dataSet(fromExisting=True) needs the label of a saved dataset")
            parts = self._executor.load_named(label)
            if parts is None:
                raise KeyError(f"no dataset is saved under the label {label!r}; saved: {self.listDataSets()}")
            return DataSet(self, L.Source(slices=tuple(parts), label=label, callsite=chk.user_callsite()))
        if data is None:
            raise ValueError("dataSet() needs data (or fromExisting=True and a label)")
        if bufferSize is not None:
            chk.check_int(bufferSize, "dataSet", "bufferSize", minimum=1)
        size = bufferSize or SEED_BUFFER_SIZE
        records = data if isinstance(data, list) else list(data)
        count = max(1, math.ceil(len(records) / size))
        slices = tuple(records[i * size:(i + 1) * size] for i in range(count))
        ds = DataSet(self, L.Source(slices=slices, label=label, callsite=chk.user_callsite()))
        if label:
            self._executor.save_named(label, list(slices))
        return ds

    def listDataSets(self) -> list[str]:
        """Labels of the datasets saved with ``dataSet(data, label=...)`` or ``DataSet.save``."""
        return self._executor.list_named()

    def dropDataSet(self, label: str) -> bool:
        """Forget a saved dataset; True if there was one."""
        return self._executor.drop_named(label)

    # -- shared variables ------------------------------------------------------------------------------
    def broadcast(self, value: Any) -> Broadcast:
        """A read-only value for tasks, shipped once per job: use ``b.value`` inside functions.

        >>> b = ctx.broadcast({"a": 1})
        >>> ctx.parallelize(["a"]).map(lambda k: b.value[k]).collect()
        [1]
        """
        return Broadcast(value)

    def accumulator(self, value: Any, accum_param: Any = None) -> Accumulator:
        """A variable tasks can only add to; read ``.value`` here after an action.

        >>> acc = ctx.accumulator(0)
        >>> ctx.parallelize([1, 2, 3]).foreach(lambda x: acc.add(x)); acc.value
        6
        """
        if accum_param is not None:
            return Accumulator(value, accum_param.addInPlace, accum_param.zero(value))
        return Accumulator(value)

    # -- side files, checkpoints, logging --------------------------------------------------------------
    def addFile(self, path: str, recursive: bool = False) -> None:
        """Ship a file to every task: read it anywhere with ``SparkFiles.get(name)`` (``from okplan
        import SparkFiles``). Local paths only; a directory is refused. On a cluster the bytes go to
        Redis under this client's namespace and each worker copies them once into its own directory.

        >>> ctx.addFile("lookup.csv")                                    # doctest: +SKIP
        >>> ctx.parallelize([1]).map(lambda _: open(SparkFiles.get("lookup.csv")).read()).first()  # doctest: +SKIP
        """
        self._add_side_file(path, False, "addFile")

    def addPyFile(self, path: str) -> None:
        """Ship a ``.py`` file (or a ``.zip``/``.egg``/``.whl`` of modules) to every task and make it
        importable there, as PySpark: tasks can ``import`` it, and functions that come from it unpickle.

        >>> ctx.addPyFile("helpers.py")                                  # doctest: +SKIP
        >>> ctx.parallelize([1]).map(lambda x: __import__("helpers").double(x)).collect()  # doctest: +SKIP
        [2]
        """
        self._add_side_file(path, True, "addPyFile")

    def _add_side_file(self, path: str, python: bool, method: str) -> None:
        import os

        from .exec import sidefiles

        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"{method}() expects a path, got {type(path).__name__}")
        path = os.path.abspath(os.fspath(path))
        if os.path.isdir(path):
            raise ValueError(f"{method}() takes a file, and {path} is a directory; zip it first")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{method}(): File {path} does not exist")
        with open(path, "rb") as f:
            data = f.read()
        name = os.path.basename(path)
        entry = {"sha": sidefiles.digest(data), "py": python}
        sidefiles.place(name, data, python, entry["sha"])  # the client sees them too, as PySpark's driver
        self._side_files[name] = entry
        store = getattr(self._executor, "store", None)
        if store is not None:
            from .exec.cluster.sidefiles import publish

            publish(store, self._executor.client_id, self._side_files, name, data,
                    getattr(self._executor, "cache_ttl", None), self._executor.block_key)
            self._executor.side_files = len(self._side_files)  # its jobs tell workers to read the manifest

    def _forget_side_files(self) -> None:
        store = getattr(self._executor, "store", None)
        if store is None or not self._side_files:
            return
        from .exec.cluster.sidefiles import forget

        try:
            forget(store, self._executor.client_id, self._side_files)
        except Exception:  # noqa: BLE001 - Redis gone: the keys expire anyway
            pass

    def setCheckpointDir(self, dirName: str) -> None:
        """Where PySpark writes checkpoints; ``checkpoint()`` needs it set. okplan keeps checkpoints
        where it keeps caches, so nothing is written there (the directory is created, as Spark does).

        >>> ctx.setCheckpointDir("/tmp/checkpoints")                     # doctest: +SKIP
        """
        import os
        import uuid

        if not isinstance(dirName, (str, os.PathLike)):
            raise TypeError(f"setCheckpointDir() expects a path, got {type(dirName).__name__}")
        path = os.path.join(os.path.abspath(os.fspath(dirName)), str(uuid.uuid4()))
        os.makedirs(path, exist_ok=True)
        self._checkpoint_dir = path

    def getCheckpointDir(self) -> str | None:
        """The directory ``setCheckpointDir`` set (with its per-Context subdirectory), or None.

        >>> ctx.setCheckpointDir("/tmp/ckpt"); ctx.getCheckpointDir()      # doctest: +SKIP
        '/tmp/ckpt/0b5c...'
        """
        return self._checkpoint_dir

    def setLogLevel(self, logLevel: str) -> None:
        """okplan's log threshold in this process, by PySpark's names: ALL, DEBUG, ERROR, FATAL, INFO,
        OFF, TRACE, WARN (any case). Applies to ``Logger``s made without a level and to the stdlib
        ``okplan`` logger.

        >>> ctx.setLogLevel("WARN")                                      # doctest: +SKIP
        """
        from .logger import set_threshold

        set_threshold(logLevel)

    # -- optimizer switch ------------------------------------------------------------------------------
    def setOptimize(self, enabled: bool) -> None:
        """Turn the optimizer on or off for the jobs that follow."""
        self.session.optimize = bool(enabled)

    @contextlib.contextmanager
    def optimizing(self, enabled: bool) -> Iterator[None]:
        """Run the enclosed actions with the optimizer on or off.

        >>> ds = ctx.parallelize([("a", 1), ("a", 2)]).reduceByKey(add)
        >>> with ctx.optimizing(False):
        ...     print(ds.collect(), "rules fired" in ds.toDebugString())
        [('a', 3)] False
        """
        saved = self.session.optimize
        self.session.optimize = bool(enabled)
        try:
            yield
        finally:
            self.session.optimize = saved

    @contextlib.contextmanager
    def adapting(self, enabled: bool) -> Iterator[None]:
        """Run the enclosed actions with adaptive planning (``docs/ADAPTIVE.md``) on or off.

        >>> ds = ctx.parallelize([("a", 1), ("a", 2)], 2).reduceByKey(add, 4)
        >>> with ctx.adapting(False):
        ...     print(ds.collect(), ctx.lastJobMetrics().stages[1].tasks)
        [('a', 3)] 4
        >>> print(ds.collect(), ctx.lastJobMetrics().stages[1].tasks)
        [('a', 3)] 1
        """
        saved = self.session.adaptive
        self.session.adaptive = bool(enabled)
        try:
            yield
        finally:
            self.session.adaptive = saved

    # -- planning (the session owns jobs; these stay for callers of the old names) -------------------
    def _plan(self, node: L.Node, optimize_: bool | None = None
              ) -> tuple[LogicalPlan, LogicalPlan, list[Firing], PhysicalPlan]:
        """The three plans of ``node`` (as ``explain`` shows them): see ``Session.plan``."""
        return self.session.plan(node, optimize_)

    def runJob(self, rdd: DataSet, partitionFunc: Callable[[Iterator], Iterable],
               partitions: list[int] | None = None) -> list:
        """Run ``partitionFunc`` on the given partitions (all by default); the results, flattened.

        >>> ctx.runJob(ctx.parallelize(range(6), 3), lambda it: [sum(it)], [0, 2])
        [1, 9]
        """
        chk.check_callable(partitionFunc, "runJob", "partitionFunc")
        chk.check_dataset(rdd, "runJob", DataSet, self)
        if partitions is not None:
            partitions = list(partitions)
            n = rdd.getNumPartitions()
            for p in partitions:
                chk.check_int(p, "runJob", "partitions")
                if not 0 <= p < n:
                    raise ValueError(f"runJob() got partition {p}, but the dataset has partitions 0..{n - 1}")
        results = self.session.run_job(rdd._node, PartitionAction(lambda it: list(partitionFunc(it)), "runJob",
                                                           partitionFunc), partitions)
        return [x for part in results for x in part]

    def lastJobMetrics(self) -> JobMetrics | None:
        """Stage-level numbers of the last job: tasks, records in/out, seconds, bytes."""
        return self._executor.last_metrics
