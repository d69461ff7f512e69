"""What runs in a worker's task process (one per slot): the cluster's handler for ``TaskPool``.

For each task the supervisor forwards, it loads the job's functions (they arrive as the bytes the
master sent, once per job and process, and stay cached until the supervisor says the job ended),
reads the inputs from Redis, runs the shared task runner, writes the output back to Redis and returns
the DONE or FAILED message for the supervisor to forward. Data never passes through the supervisor:
worker -> Redis -> worker. Every exception of user code, ``BaseException`` included, is caught here
and becomes a ``user`` failure; only the death of this process is left to the supervisor.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

from .. import accumulators
from ..serialization import UNKEYED, BlockIntegrityError, loads_function, serialize
from ..metrics import TaskMetrics
from ..pool import take_turn
from ..profile import profiled
from ..task import annotate, run_task
from . import protocol as P
from . import sidefiles
from .blocks import RedisBlocks, TaskMeter, task_memory, write_output
from .heap import TaskHeap, tune_collector
from .remote_errors import pack_exception
from .spec import JobSpec, decode_spec
from .store import BlockStore, MissingBlockError, StoreUnavailableError


class _LoadedJob:
    __slots__ = ("spec", "stages", "action", "acc_registry")

    def __init__(self, spec: JobSpec, stages: dict, action: Any, acc_registry: dict):
        self.spec = spec
        self.stages = stages
        self.action = action
        self.acc_registry = acc_registry


def _share_cpu(cpu: float, metrics: list[dict[str, Any]]) -> None:
    """Give each task's metrics its share of ``cpu`` seconds, in proportion to its wall time."""
    wall = sum(m["seconds"] for m in metrics)
    for m in metrics:
        m["cpu_seconds"] = cpu * m["seconds"] / wall if wall > 0 else cpu / len(metrics)


class SlotRunner:
    """The handler of one task process. A request is ``(header, blobs)`` with ``header`` = the TASK's
    ``job_id``, ``stage`` and ``tasks`` (``[[partition, attempt], ...]``: one, or a batch of short tasks
    run one after the other without a round trip each) plus ``redis`` (the URL) and ``drop`` (jobs to
    forget), and ``blobs`` = ``[spec, job]`` the first time this process sees the job. The reply is
    ``(replies, blobs)``: one ``(kind, body, number of blobs)`` of a DONE or FAILED per task, their
    blobs in order. Once a task of a batch fails, the rest are not run: they come back as FAILED with
    ``requeue`` for the master to queue again, without counting an attempt. A batch comes with
    ``turns``: a task runs only if it gets a turn (``pool.take_turn``), and the supervisor takes back
    those not started once the batch runs past its budget (its tasks were slower than the master
    expected), even while one of them runs; the reply then covers the tasks before them.

    >>> runner = SlotRunner("host-1-ab")                                          # doctest: +SKIP
    >>> runner({"job_id": "j", "stage": 0, "tasks": [[0, 0]], "redis": url}, [spec, job])  # doctest: +SKIP
    ([('done', {...}, 1)], [b'...'])
    """

    def __init__(self, worker: str, block_key: bytes = UNKEYED):
        self.worker = worker
        self.block_key = block_key  # blocks are signed and checked with the cluster's key
        self.jobs: dict[str, _LoadedJob] = {}
        self.stores: dict[str, BlockStore] = {}
        #: the last task's output and its encoded bytes, freed after the reply left (``after_reply``):
        #: freeing a partition's hundreds of thousands of objects took milliseconds between a task's end
        #: and its DONE; then by ``heap`` while this process waits for work
        self.heap = TaskHeap()
        # This process only runs tasks, which allocate containers by the hundred thousand (records,
        # buckets, groups, decoded blocks): collect the young generation seldom, and never what the
        # fork inherited
        tune_collector()

    def __call__(self, header: dict[str, Any], blobs: list[bytes]) -> tuple[list[tuple[str, dict, int]], list[bytes]]:
        for job_id in header.get("drop", ()):
            # freed while this process waits for work: a job's functions may hold what its tasks built
            # once per process (a broadcast join's table: freeing it took milliseconds before this task)
            job = self.jobs.pop(job_id, None)
            if job is not None:
                self.heap.discard(job, 0)
        replies: list[tuple[str, dict, int]] = []
        out: list[bytes] = []
        failed = False
        turns = header.get("turns", False)
        # CPU time once per request: reading the thread's CPU clock cost tens of microseconds here,
        # as much as a short task; a batch's CPU time is shared out by its tasks' wall time
        cpu0 = time.thread_time()
        for p, attempt in header["tasks"]:
            if turns and not take_turn():
                break  # the batch ran past its budget: the supervisor took the rest back and reports them
            task = {"job_id": header["job_id"], "stage": header["stage"], "partition": p, "attempt": attempt}
            if failed:
                replies.append((P.FAILED, {**task, "reason": "infra", "requeue": True,
                                           "message": "not run: an earlier task of its batch failed"}, 0))
                continue
            kind, body, reply_blobs = self.run({**task, "redis": header["redis"]}, blobs)
            replies.append((kind, body, len(reply_blobs)))
            out += reply_blobs
            failed = kind != P.DONE
        _share_cpu(time.thread_time() - cpu0, [body["metrics"] for kind, body, _ in replies if kind == P.DONE])
        return replies, out

    def after_reply(self) -> None:
        """The last task's output is no longer needed, now that its DONE is on its way (the pool calls
        this): it is freed while the process waits for its next task (``idle``), or now if it is big."""
        self.heap.release()

    def idle(self, waiting: Callable[[], bool]) -> None:
        """Nothing to run (the pool calls this): free finished outputs until ``waiting()``."""
        self.heap.tidy(waiting)

    def _store(self, url: str) -> BlockStore:
        store = self.stores.get(url)
        if store is None:
            store = self.stores[url] = BlockStore(url)
        return store

    def _load(self, job_id: str, blobs: list[bytes], store: BlockStore) -> _LoadedJob | None:
        job = self.jobs.get(job_id)
        if job is not None or len(blobs) < 2:
            return job
        spec = decode_spec(blobs[0])
        for p in spec.get("sys_path", ()):
            if p not in sys.path and os.path.isdir(p):
                sys.path.append(p)
        if spec.get("side_files", 1):  # addFile/addPyFile: before the functions, which may import them
            sidefiles.install(store, spec["client"], self.block_key)
        # Accumulators unpickle into the registry begin_task() opens; the job keeps that registry so
        # each of its tasks reports the updates of the copies its functions hold.
        registry = accumulators.begin_task()
        stages, action = loads_function(blobs[1])
        job = self.jobs[job_id] = _LoadedJob(spec, stages, action, registry)
        return job

    def run(self, b: dict[str, Any], blobs: list[bytes]) -> tuple[str, dict, tuple]:
        """Run the task of a TASK body; the reply's kind, body and blobs."""
        ident = {"job_id": b["job_id"], "stage": b["stage"], "partition": b["partition"], "attempt": b["attempt"]}
        t_start = time.perf_counter()
        store = self._store(b["redis"])
        try:
            job = self._load(b["job_id"], blobs, store)
        except BlockIntegrityError as e:  # a forged side-file manifest
            return P.FAILED, {**ident, "reason": "integrity", "message": str(e)}, ()
        except BaseException as e:  # noqa: BLE001 - user code ran while unpickling: it is the user's error
            e.add_note(f"okplan: while unpickling the job's functions on worker {self.worker}: the modules "
                       f"they come from must be importable on the workers")
            body, blob = pack_exception(e, self.worker)
            return P.FAILED, {**body, "reason": "user", **ident}, (blob,)  # the task, not the note, says where
        if job is None:
            return P.FAILED, {**ident, "reason": "infra", "resend_job": True,
                              "message": f"job {b['job_id']} arrived without its functions (this worker forgot them)"}, ()
        stage = job.stages[b["stage"]]
        meter = TaskMeter(self.block_key)
        blocks = RedisBlocks(store, job.spec, meter)
        memory = task_memory(job.spec)
        accumulators.begin_task(job.acc_registry)
        operators: dict[str, float] = {}
        try:
            t0 = time.perf_counter()
            if job.spec.get("profile"):
                with profiled(stage, job.action) as operators:
                    result = run_task(stage, b["partition"], blocks, job.action, memory)
            else:
                result = run_task(stage, b["partition"], blocks, job.action, memory)
            t_task = time.perf_counter() - t0
            io_in = meter.io_seconds()
            stored, inline = write_output(store, job.spec, stage, b["partition"], result.value, meter)
            updates = accumulators.task_updates()
            # plain data, pickled in the try: a value that cannot be pickled is the user's error
            acc = serialize(updates) if updates else b""
        except MissingBlockError as e:
            accumulators.task_updates()
            return P.FAILED, {**ident, "reason": "missing", "missing": e.missing, "message": str(e)}, ()
        except StoreUnavailableError as e:
            accumulators.task_updates()
            return P.FAILED, {**ident, "reason": "infra", "message": str(e)}, ()
        except BlockIntegrityError as e:
            accumulators.task_updates()
            return P.FAILED, {**ident, "reason": "integrity", "message": str(e)}, ()
        except BaseException as e:  # noqa: BLE001 - KeyboardInterrupt, CancelledError, SystemExit...: the user's
            accumulators.task_updates()
            # run_task leaves Ctrl-C alone for the local executor; here nobody presses it (SIGINT is ignored)
            annotate(e, stage, b["partition"], job.action)
            body, blob = pack_exception(e, self.worker)
            return P.FAILED, {**body, "reason": "user", **ident}, (blob,)  # the task, not the note, says where
        finally:
            memory.spill_dir.remove()  # a task's spill files end with it: its output is in Redis now
        self.heap.hold(result.value, meter.bytes_raw)
        result.value = None
        metrics = TaskMetrics(
            result.records_in, result.records_out, time.perf_counter() - t_start, 0.0,  # cpu: set by __call__
            {"compute": max(0.0, t_task - io_in), "serialize": meter.serialize, "compress": meter.compress,
             "store": meter.store},
            meter.bytes_raw, meter.bytes_compressed, meter.bytes_read, meter.bytes_written, result.spill_bytes,
            operators, result.bucket_records or [], result.bucket_bytes or [],
        ).to_wire()
        return P.DONE, {**ident, "metrics": metrics, "acc": acc, "stored": stored}, (inline,) if inline else ()
