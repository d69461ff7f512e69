"""``ClusterExecutor``: the client side of a cluster, what ``Context("tcp://host:port")`` runs jobs with.

A job: upload the plan's source partitions to Redis, cloudpickle the stages once (without the source
data), SUBMIT, then yield result partitions in order as the master announces them (small results come in
the message, large ones are read from Redis). Closing the iterator early cancels the job.
"""

from __future__ import annotations

import contextlib
import pickle
import threading
import time
import uuid
from typing import Any, Callable, Iterator

import zmq

from ...errors import CacheLostError, ClusterUnavailableError, ConfigurationError, JobFailedError, TaskProcessDiedError
from ...physical.stage import Materialize, PhysicalPlan, ShuffleWrite
from ..accumulators import merge_updates
from ...log import get_logger
from ..memory import task_memory as task_memory_of
from ..metrics import JobMetrics, LastMetrics
from ..profile import profile_wanted
from ..progress import job_progress
from ..serialization import (BlockIntegrityError, block_key, decode_block, dumps_function, encode_block,
                             without_source_data)
from . import protocol as P
from . import sidefiles
from .link import ClientLink
from .remote_errors import unpack_exception
from .blocks import BYTE_PIECES, encode_chunks, joined
from .spec import build_spec, encode_spec, sources_to_upload
from .store import BlockStore, Keys, StoreUnavailableError, cache_key, kept_key, redacted, with_env_password

log = get_logger(__name__)

#: seconds a cache() partition outlives the last refresh by its client (refreshed every third of it)
CACHE_TTL = 15 * 60
#: seconds between deletions of dropped kept shuffles' keys
_DROP_EVERY = 0.5
#: source blocks of a job that add up to at most this many bytes travel in its spec (to every worker,
#: with the job's functions) instead of Redis: a small job saves the upload and a read per task
INLINE_SOURCES = 64 << 10
#: seconds between two WAKE messages of this client (a burst of actions needs one)
_WAKE_EVERY = 0.005



class _Gone(Exception):
    """A chunk of a stored result is no longer in Redis."""

class ClusterExecutor:
    """Runs jobs on the cluster whose master listens at ``url``.

    ``secret``: the cluster's shared secret (default ``OKPLAN_SECRET``). ``redis``: the Redis URL as
    seen from this host, when it differs from the one the master uses. ``connect_timeout``: seconds
    to wait for the master before ``ClusterUnavailableError``. ``cache_ttl``: seconds a ``cache()``
    partition outlives this client (refreshed while it lives; None: until ``unpersist``/``stop``).
    Thread-safe: any number of threads may run jobs at once (see ``link.ClientLink``).

    >>> ctx = Context("tcp://127.0.0.1:7077")              # doctest: +SKIP
    >>> ctx.parallelize(range(10)).sum()                     # doctest: +SKIP
    45
    """

    name = "cluster"
    #: finished shuffle outputs can be kept for later jobs (under ``okplan:kept:``, see ``spec.kept``)
    keeps_shuffles = True

    def __init__(self, url: str, secret: str | bytes | None = None, redis: str | None = None,
                 connect_timeout: float = 3.0, alive_timeout: float = 15.0, job_ttl: int = 3600,
                 cache_ttl: int | None = CACHE_TTL, inline_max: int = 1 << 16,
                 task_memory: str | int | None = None):
        self.url = url
        self.secret = P.secret_bytes(secret)
        self.block_key = block_key(self.secret)
        self.alive_timeout = alive_timeout
        self.job_ttl = job_ttl
        self.cache_ttl = cache_ttl
        self.inline_max = inline_max
        self.task_memory = task_memory_of(task_memory)
        self._metrics = LastMetrics()
        #: time each operator inside fused stages (sampled): ``Context(profile=True)``
        self.profile = profile_wanted()
        #: the Context's appName, shown by the master's dashboard
        self.app_name: str | None = None
        #: the master's web dashboard (``ctx.uiWebUrl``), from its welcome
        self.ui_web_url: str | None = None
        self.client_id = uuid.uuid4().hex[:12]
        self._caches: dict[str, int] = {}          # cache id -> partitions, of cache() stages we ran
        self._kept: dict[str, int] = {}            # keep id -> map tasks, of kept shuffles we wrote (LRU first)
        self._kept_bytes: dict[str, int] = {}      # keep id -> bytes its map tasks wrote
        #: cache id or keep id -> records its stage wrote: the spec tells the master, which batches
        #: the tasks of a later job's stage that reads few of them (``spec.known_records``)
        self._records: dict[str, int] = {}
        #: kept shuffles a running adaptive job still reads (``pin_shuffle``): outside the budget
        self.pinned: set[str] = set()
        #: keys of dropped kept shuffles, deleted by the keeper thread: a drop may come from the garbage
        #: collector, inside any call of any thread (even one holding the Redis pool's lock)
        self._dropped: list[list[str]] = []
        #: side files (addFile/addPyFile) published for this client; the Context counts them, and a job's
        #: spec says so, so that workers read the manifest only when there is one
        self.side_files = 0
        self._stopped = False
        self._woken = 0.0
        self._slots = 0
        self._max_message = 0                      # the master's --max-message-bytes, from welcome
        self._refresher: threading.Thread | None = None
        self._refresh_stop = threading.Event()
        try:
            self.link = ClientLink(url, f"c-{self.client_id}".encode(), self._encode, self._decode,
                                   secret=self.secret)
        except zmq.ZMQError as e:
            raise ConfigurationError(f"bad master address {url!r}: {e}; use tcp://host:port") from None
        try:
            welcome = self.hello(connect_timeout)
            self.store = BlockStore(with_env_password(redis) if redis else welcome["redis"])
            self.store.ping()
            #: kept shuffles take at most a quarter of Redis's maxmemory (None: Redis has no limit)
            self.kept_budget = self.store.max_memory() // 4 or None
        except BaseException:
            self.link.stop()
            raise
        self._start_refresher()

    @property
    def last_metrics(self) -> JobMetrics | None:
        """The metrics of the calling thread's last job (else of the last job of any thread)."""
        return self._metrics.get()

    # -- talking to the master (the link's thread calls these two) ---------------------------------------
    def _encode(self, kind: str, body: dict, blobs: Any) -> list:
        return P.pack(kind, body, blobs)

    def _decode(self, frames: list) -> P.Message:
        reason = P.refusal_reason(frames)
        if reason is not None:
            raise ClusterUnavailableError(f"the master at {self.url} refused this client: {reason}")
        return P.unpack(frames)

    def _send(self, kind: str, body: dict | None = None, blobs: tuple = ()) -> None:
        self.link.send(kind, body, blobs)

    def wake(self) -> None:
        """Tell the master a job is coming (the session calls this before it plans one): the master
        wakes idle workers, which wake their task processes, while this client plans.

        >>> executor.wake()                                 # doctest: +SKIP
        """
        now = time.monotonic()
        if now - self._woken >= _WAKE_EVERY and not self._stopped:
            self._woken = now
            with contextlib.suppress(ClusterUnavailableError):
                self._send(P.WAKE)

    def hello(self, timeout: float = 3.0) -> dict[str, Any]:
        """Ask the master for its Redis URL, workers and dashboard; ``ClusterUnavailableError`` after
        ``timeout``.

        >>> executor.hello()["workers"]                     # doctest: +SKIP
        2
        """
        self._send(P.CLIENT_HELLO, {"versions": P.ADVERTISED})
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClusterUnavailableError(
                    f"no okplan master answers at {self.url} (waited {timeout:g}s); start one with "
                    f"`okplan master --bind {self.url}` or check the address and the shared secret")
            msg = self.link.control(left)
            if msg is not None and msg.kind == P.WELCOME:
                why = P.version_mismatch(msg.body.get("versions"), "the master", "this client")
                if why is not None:
                    raise ClusterUnavailableError(f"the master at {self.url} cannot serve this client: {why}")
                self._slots = msg.body.get("slots", 0)
                self._max_message = msg.body.get("max_message_bytes") or 0
                self.ui_web_url = msg.body.get("dashboard")
                return msg.body

    def _next(self, job_id: str) -> P.Message:
        """The next message about ``job_id`` (the link routes each job's messages to its own queue)."""
        msg = self.link.get(job_id, self.alive_timeout)
        if msg is None:
            raise ClusterUnavailableError(
                f"lost contact with the okplan master at {self.url}: no word for "
                f"{self.alive_timeout:g}s during job {job_id}")
        return msg

    # -- the Executor interface --------------------------------------------------------------------------
    @property
    def default_parallelism(self) -> int:
        return self._slots if self._slots > 0 else 2

    def run(self, plan: PhysicalPlan, action: Callable[[Iterator], Any],
            partitions: list[int]) -> Iterator[tuple[int, Any]]:
        """Yield ``(partition, value)`` in the order of ``partitions``; closing early cancels the job.

        >>> list(executor.run(plan, PartitionAction(list, "collect"), [0, 1]))   # doctest: +SKIP
        [(0, [...]), (1, [...])]
        """
        if self._stopped:
            raise RuntimeError("this cluster executor was stopped")
        return self._run(plan, action, list(partitions))

    def _run(self, plan: PhysicalPlan, action: Callable, want: list[int]) -> Iterator[tuple[int, Any]]:
        metrics = JobMetrics(self.name)
        self._metrics.set(metrics)
        started = time.perf_counter()
        job_id = metrics.job_id = self._submit(plan, action, want, metrics)
        progress = job_progress(job_id)
        unique = len(set(want)) == len(want)
        got: dict[int, Any] = {}
        i = 0
        ended = False
        resubmits = 1
        try:
            while i < len(want) or not ended:
                if i < len(want) and want[i] in got:
                    p = want[i]
                    i += 1
                    yield p, got.pop(p) if unique else got[p]
                    continue
                if ended:
                    raise JobFailedError(f"job {job_id} ended without the result of partition {want[i]}")
                msg = self._next(job_id)
                body = msg.body
                _merge(body.get("acc"))
                if msg.kind == P.RESULT:
                    # one message may carry several partitions: ``more`` = [[partition, stored], ...],
                    # and a blob for each one not stored, in order
                    self._results(job_id, [(body["partition"], body["stored"]), *body.get("more", ())],
                                  msg.blobs, got, metrics)
                elif msg.kind == P.JOB_ALIVE:
                    if progress is not None:
                        for stage_id, done, total, records in body.get("progress") or ():
                            progress.update(stage_id, done, total, records)
                elif msg.kind == P.JOB_DONE:
                    self._results(job_id, body.get("results", ()), msg.blobs, got, metrics)  # the last ones
                    ended = True
                    self._slots = body.get("slots") or self._slots
                    metrics.fill_from_wire(body["metrics"])
                    self._account_kept(plan, metrics)
                    self._note_records(plan, metrics)
                    log.info("job finished", extra={"job": job_id, "seconds": round(time.perf_counter() - started, 6),
                                                    "tasks": sum(m.tasks for m in metrics.stages.values())})
                elif msg.kind == P.JOB_FAILED:
                    metrics.fill_from_wire(body.get("metrics") or {})
                    if body["reason"] == "source_lost" and resubmits > 0:
                        # Redis lost the data this client uploaded: upload it again and start over
                        log.warning("job's uploaded data is gone from Redis: uploading it again",
                                    extra={"job": job_id})
                        resubmits -= 1
                        self.link.close(job_id)
                        job_id = metrics.job_id = self._submit(plan, action, want, metrics)
                        got.clear()
                        want = want[i:]
                        i = 0
                        continue
                    ended = True
                    log.info("job failed", extra={"job": job_id, "reason": body["reason"],
                                                  "why": body.get("message"), "stage": body.get("stage"),
                                                  "task": body.get("partition")})
                    raise self._job_error(body, msg.blobs)
        finally:
            if progress is not None:
                progress.close()
            metrics.seconds = time.perf_counter() - started
            self.link.close(job_id)
            if not ended:
                self._abandon(job_id, want)

    def _submit(self, plan: PhysicalPlan, action: Callable, want: list[int], metrics: JobMetrics) -> str:
        job_id = uuid.uuid4().hex[:16]
        spec = build_spec(job_id, self.client_id, plan, want, ttl=self.job_ttl, cache_ttl=self.cache_ttl,
                          inline_max=self.inline_max, task_memory=self.task_memory, profile=self.profile,
                          app=self.app_name, known_records=self._records)
        job_blob = dumps_function(({s.id: s for s in plan.stages}, action), strip=without_source_data)  # partitions go to Redis or the spec
        keys = Keys(job_id, self.client_id)
        uploads = []
        big: list[tuple[str, list[bytes], int]] = []
        for sid, op in sources_to_upload(plan).items():
            for i, part in enumerate(op.slices or ()):
                chunks = list(encode_chunks(part, lambda o: encode_block(o, self.block_key), self.store.chunk_bytes))
                if len(chunks) == 1:
                    uploads.append((keys.source(sid, i), chunks[0]))
                else:  # a big partition goes in chunks (the client holds it anyway)
                    big.append((keys.source(sid, i), chunks, len(part)))
        if not big and sum(len(b) for _, b in uploads) <= INLINE_SOURCES:
            # small: the sources ride in the spec; nothing in Redis, so nothing to delete either
            spec["inline_blocks"] = dict(uploads)
            spec["sources"] = {}
            uploads = []
        spec["side_files"] = self.side_files
        spec_blob = encode_spec(spec)
        size = len(spec_blob) + len(job_blob)
        if self._max_message and size + 4096 > self._max_message:
            # the master would hang up on it mid-message; say why instead
            raise JobFailedError(f"the job's functions are {size / 2**20:.1f} MiB pickled, over the master's limit "
                                 f"of {self._max_message / 2**20:.1f} MiB per message (okplan master "
                                 f"--max-message-bytes): pass large data as a dataset (parallelize, then join) "
                                 f"instead of inside functions or broadcast variables, or raise the limit")
        for stage in plan.stages:
            out = stage.output
            if isinstance(out, Materialize) and out.scope == "context":
                self._caches[out.cache_id] = stage.num_partitions
            elif isinstance(out, ShuffleWrite) and out.keep_id is not None and out.reused_from is None:
                self._kept[out.keep_id] = stage.num_partitions
        try:
            if uploads:
                self.store.put_many(uploads, self.job_ttl)
                metrics.bytes_written += sum(len(b) for _, b in uploads)
            for key, chunks, count in big:
                self.store.put_chunked(key, iter(chunks), count, self.job_ttl)
                metrics.bytes_written += sum(map(len, chunks))
            self.link.open(job_id)
            self._send(P.SUBMIT, {"job_id": job_id}, (spec_blob, job_blob))
            log.debug("job submitted", extra={"job": job_id, "stages": len(plan.stages), "master": self.url})
        except BaseException:
            # an upload that failed half way (or a submit that never left) leaves no keys behind
            self.link.close(job_id)
            with contextlib.suppress(StoreUnavailableError):
                self.store.delete([k for k, _ in uploads] + [k for k, _, _ in big])
            raise
        return job_id

    def _results(self, job_id: str, results: Any, blobs: list, got: dict[int, Any], metrics: JobMetrics) -> None:
        """Decode the ``[[partition, stored], ...]`` a RESULT or JOB_DONE carries into ``got``: a blob
        each, in order, for those not stored in Redis."""
        values = iter(blobs)
        for p, stored in results:
            got[p] = self._result_value(job_id, p, stored, None if stored else next(values), metrics)

    def _result_value(self, job_id: str, partition: int, stored: bool, blob: bytes | None,
                      metrics: JobMetrics) -> Any:
        if stored:
            key = Keys(job_id).result(partition)
            blob = self.store.take(key)
            if blob is None:
                found, value = self._take_chunked(key, metrics)
                if found:
                    return value
            if blob is None:
                raise JobFailedError(f"the result of partition {partition} of job {job_id} is gone "
                                     f"from Redis (restarted or evicted); run the action again")
        metrics.bytes_read += len(blob)
        return decode_block(blob, self.block_key, f"the result of partition {partition} of job {job_id}")

    def _take_chunked(self, key: str, metrics: JobMetrics) -> tuple[bool, Any]:
        """``(True, result)`` for a result stored in chunks (a list too big for one Redis value, or the
        pieces of one big object), read and deleted; ``(False, None)`` if it is not there."""
        info = self.store.chunk_info(key)
        if info is None:
            return False, None
        n, count = info
        out: list = []
        pieces: list[bytes] = []

        def decoded() -> Iterator[Any]:
            for i in range(n):
                blob = self.store.get_field(key, str(i))
                if blob is None:
                    raise _Gone(key)
                metrics.bytes_read += len(blob)
                if count == BYTE_PIECES:
                    pieces.append(blob)
                else:
                    yield decode_block(blob, self.block_key, f"a chunk of {key}")
        try:
            for chunk in joined(decoded()):
                out += chunk
        except _Gone:
            return False, None
        self.store.delete([key])
        if count == BYTE_PIECES:
            return True, decode_block(b"".join(pieces), self.block_key, f"the result at {key}")
        return True, out

    def _job_error(self, body: dict, blobs: list) -> BaseException:
        reason = body["reason"]
        if reason == "user":
            return unpack_exception(body, blobs[0] if blobs else b"")
        if reason == "cache_lost":
            self._caches.pop(body.get("cache_id"), None)
            self.drop_kept_shuffle(body.get("cache_id"))
            return CacheLostError(body.get("message") or "a cached dataset is gone", body.get("cache_id"))
        if reason == "integrity":
            return BlockIntegrityError(body.get("message") or "a block failed its integrity check")
        if reason == "crashed":
            return TaskProcessDiedError(body.get("message") or "a task killed its process too often")
        return JobFailedError(body.get("message") or f"job failed ({reason})")

    def _abandon(self, job_id: str, want: list[int]) -> None:
        """The caller stopped early (``take``) or an error left the job running: cancel it and drop
        results already stored for us."""
        try:
            self._send(P.CANCEL, {"job_id": job_id})
            keys = Keys(job_id)
            self.store.delete([keys.result(p) for p in set(want)])
        except (ClusterUnavailableError, StoreUnavailableError):
            pass  # the master cleans up after cancelled jobs (and after silent clients); keys expire anyway

    # -- caches ------------------------------------------------------------------------------------------
    def _cache_keys(self, cache_id: str, n: int) -> list[str]:
        return [cache_key(self.client_id, cache_id, i) for i in range(n)]

    def has_cached(self, cache_id: str) -> bool:
        """True when every partition of ``cache_id`` is in Redis (after a Redis restart it is not, and
        the plan computes the dataset again)."""
        n = self._caches.get(cache_id)
        if n is None:
            return False
        if self.store.exists_all(self._cache_keys(cache_id, n)):
            return True
        self.drop_cached(cache_id)
        return False

    def _note_records(self, plan: PhysicalPlan, metrics: JobMetrics) -> None:
        """Remember the records of the caches and kept shuffles a finished job wrote."""
        for stage in plan.stages:
            out = stage.output
            key = out.cache_id if isinstance(out, Materialize) else \
                out.keep_id if isinstance(out, ShuffleWrite) and out.reused_from is None else None
            m = metrics.stages.get(stage.id)
            if key is not None and m is not None and m.tasks:
                self._records[key] = m.records_out

    def drop_cached(self, cache_id: str) -> None:
        self._records.pop(cache_id, None)
        n = self._caches.pop(cache_id, None)
        if n:
            self.store.delete(self._cache_keys(cache_id, n))

    # -- kept shuffles (shuffle reuse) -------------------------------------------------------------------
    def _kept_keys(self, keep_id: str, maps: int) -> list[str]:
        return [kept_key(self.client_id, keep_id, m) for m in range(maps)]

    def has_kept_shuffle(self, keep_id: str) -> bool:
        """True when every map task's output of the kept shuffle ``keep_id`` is in Redis (or its spill
        tier); one that lost a block (Redis restarted, a key evicted) is dropped, and the plan computes
        the shuffle again.

        >>> executor.has_kept_shuffle("shuffle-1-1")             # doctest: +SKIP
        True
        """
        maps = self._kept.get(keep_id)
        if maps is None:
            return False
        if self.store.exists_all(self._kept_keys(keep_id, maps)):
            return True
        self.drop_kept_shuffle(keep_id)
        return False

    def _account_kept(self, plan: PhysicalPlan, metrics: JobMetrics) -> None:
        """Note the sizes of the shuffles a finished job kept and which kept ones it used; past the
        budget, the least recently used kept shuffles go (a later job computes them again)."""
        for stage in plan.stages:
            out = stage.output
            if not isinstance(out, ShuffleWrite) or out.keep_id is None:
                continue
            if out.reused_from is None:
                written = metrics.stages.get(stage.id)
                self._kept_bytes[out.keep_id] = written.bytes_compressed if written is not None else 0
            else:
                maps = self._kept.pop(out.keep_id, None)
                if maps is not None:
                    self._kept[out.keep_id] = maps  # the most recently used now
        self._trim_kept()

    def _trim_kept(self) -> None:
        """Past the budget, drop the least recently used kept shuffles (never a pinned one)."""
        if self.kept_budget is None:
            return
        kept = _items(self._kept)
        total = sum(self._kept_bytes.get(keep_id, 0) for keep_id, _ in kept)
        for keep_id, _ in kept:
            if total <= self.kept_budget:
                break
            if keep_id in self.pinned:
                continue
            total -= self._kept_bytes.get(keep_id, 0)
            self.drop_kept_shuffle(keep_id)

    def pin_shuffle(self, keep_id: str, reusable: bool = True) -> None:
        """Keep the shuffle written under ``keep_id`` whatever the budget until ``unpin_shuffle``: an
        adaptive job ran its map stage first and reads it next (``okplan/query_stages.py``).

        >>> executor.pin_shuffle("shuffle-1-1")                  # doctest: +SKIP
        """
        self.pinned.add(keep_id)

    def unpin_shuffle(self, keep_id: str) -> None:
        """The pinning job is done: the shuffle stays for later jobs within the budget, or goes.

        >>> executor.unpin_shuffle("shuffle-1-1")                # doctest: +SKIP
        """
        self.pinned.discard(keep_id)
        self._trim_kept()

    def drop_kept_shuffle(self, keep_id: str | None) -> None:
        """Forget the kept shuffle ``keep_id``; its keys go soon after (the keeper thread deletes them).
        Safe to call from a garbage collector's finalizer: single list and dict operations only.

        >>> executor.drop_kept_shuffle("shuffle-1-1")            # doctest: +SKIP
        """
        maps = self._kept.pop(keep_id, None) if keep_id is not None else None
        self._kept_bytes.pop(keep_id, None)
        self._records.pop(keep_id, None)
        if maps is not None:
            self._dropped.append(self._kept_keys(keep_id, maps))

    def _delete_dropped(self) -> None:
        while self._dropped:
            keys = self._dropped.pop()
            try:
                self.store.delete(keys)
            except StoreUnavailableError:
                self._dropped.append(keys)  # tried again later; they expire anyway
                return

    # -- named datasets ----------------------------------------------------------------------------------
    def save_named(self, label: str, partitions: list[list]) -> None:
        """Keep ``partitions`` under ``label`` for any client of this cluster."""
        def encode(records: list) -> bytes:
            return encode_block(records, self.block_key)
        # a partition bigger than a chunk is kept in chunks, as blocks are: a Redis value has a size limit
        self.store.save_named(label, [list(encode_chunks(list(p), encode, self.store.chunk_bytes))
                                      for p in partitions])

    def load_named(self, label: str) -> list[list] | None:
        chunked = self.store.load_named(label)
        if chunked is None:
            return None
        out = []
        for i, chunks in enumerate(chunked):
            records: list = []
            for chunk in joined(decode_block(b, self.block_key, f"partition {i} of the named dataset {label!r}")
                                for b in chunks):
                records += chunk
            out.append(records)
        return out

    def list_named(self) -> list[str]:
        return self.store.list_named()

    def drop_named(self, label: str) -> bool:
        return self.store.drop_named(label)

    # -- keeping caches alive ----------------------------------------------------------------------------
    def _start_refresher(self) -> None:
        """Cache, kept shuffle and side-file keys expire ``cache_ttl`` after they were last refreshed;
        while this client lives, a thread refreshes them every third of that, so a dead client's go
        away. The same thread deletes the keys of dropped kept shuffles (see ``drop_kept_shuffle``)."""
        if self._refresher is not None:
            return
        self._refresher = threading.Thread(target=self._refresh_caches, name="okplan-cache-ttl", daemon=True)
        self._refresher.start()

    def _refresh_caches(self) -> None:
        every = max(1.0, self.cache_ttl / 3) if self.cache_ttl else None
        due = time.monotonic() + every if every else None
        # a short wait: dropped shuffles' keys go within half a second (as Spark's ContextCleaner thread)
        while not self._refresh_stop.wait(_DROP_EVERY):
            self._delete_dropped()
            if due is None or time.monotonic() < due:
                continue
            due = time.monotonic() + every
            keys = [k for cache_id, n in _items(self._caches) for k in self._cache_keys(cache_id, n)]
            keys += [k for keep_id, n in _items(self._kept) for k in self._kept_keys(keep_id, n)]
            with contextlib.suppress(StoreUnavailableError, BlockIntegrityError):
                keys += sidefiles.alive_keys(self.store, self.client_id, self.block_key)
            with contextlib.suppress(StoreUnavailableError):
                self.store.expire(keys, self.cache_ttl)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Drop this client's cached datasets and close the connection (a cluster keeps running)."""
        if self._stopped:
            return
        self._stopped = True
        self._refresh_stop.set()
        for keep_id, _ in _items(self._kept):
            self.drop_kept_shuffle(keep_id)
        try:
            for cache_id in list(self._caches):
                self.drop_cached(cache_id)
            self._delete_dropped()
        except StoreUnavailableError:
            pass
        self.store.close()
        self.link.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} redis={redacted(getattr(getattr(self, 'store', None), 'url', '?'))}>"


def _items(d: dict) -> list[tuple]:
    """A copy of ``d``'s items, safe against a garbage collector's finalizer changing ``d`` meanwhile."""
    while True:
        try:
            return list(d.items())
        except RuntimeError:  # changed during iteration
            continue


def _merge(acc_blobs: list | None) -> None:
    for blob in acc_blobs or ():
        merge_updates(pickle.loads(blob))

