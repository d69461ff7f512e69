"""The session: owns the jobs of one ``Context``, between the user API and the executor.

Every job and every ``explain()`` goes through one prepare path (``Session.prepare``): swap cached
datasets in, optimize, decide which shuffles reuse an earlier job's output (``okplan/shuffle_reuse.py``),
sample sort bounds (running jobs only), plan the stages. So what ``explain()`` shows is what runs,
skipped stages included. ``DataSet`` and its actions call the public methods here (``run_job``,
``persist``, ``explain``, ...); ``Context`` keeps PySpark's API and delegates.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterator

from ._tracebacks import trim
from .actions import PartitionAction, _count, _to_list
from .adaptive import Decision, adaptive_enabled, plan_broadcasts, plan_coalescing
from .adaptive import broadcast_threshold as broadcast_threshold_
from .errors import CacheLostError
from .exec.metrics import JobMetrics
from .logical import nodes as L
from .logical.optimizer import Firing, optimize
from .logical.plan import LogicalPlan
from .logical.render import render_tree
from .physical.dot import render_dot
from .physical.operators import RanFirst
from .physical.planner import plan_physical
from .physical.render import render_compact, render_physical
from .physical.stage import PhysicalPlan, ShuffleWrite, Stage
from .query_stages import MapOutput, Settings, replan
from .query_stages import skew_factor as skew_factor_
from .query_stages import skew_threshold as skew_threshold_
from .shuffle_reuse import Planned, ShuffleReuse, reuse_enabled
from .sort_bounds import resolve_sort_bounds

#: times a job is planned again because a cached dataset it reads vanished while it ran
_CACHE_LOST_RETRIES = 2
#: jobs whose plan and metrics ``explain(analyze=True)`` can still show without running them again
_ANALYZED_JOBS = 32


@dataclass(frozen=True)
class Prepared:
    """A job's plans, as ``explain()`` shows them and the executor runs them."""

    logical: LogicalPlan             # the user's plan with cached datasets swapped in
    optimized: LogicalPlan
    fired: list[Firing]
    physical: PhysicalPlan
    temporary: list[str] = field(default_factory=list)  # caches of sort bounds and broadcast sides, dropped after the job
    shuffles: list[Planned] = field(default_factory=list)  # kept or reused shuffle outputs
    #: adaptive query stages: map stages run first (their plans and figures), kept pinned until the job ends
    stages_first: list[tuple[PhysicalPlan, JobMetrics | None]] = field(default_factory=list)
    pinned: dict[str, int] = field(default_factory=dict)   # keep id -> map outputs


class Session:
    """The jobs, caches and checkpoints of one Context, run on its executor.

    >>> s = ctx.session
    >>> s.run_job(ctx.parallelize([1, 2, 3], 2)._node, PartitionAction(sum, "sum"), None)
    [1, 5]
    """

    def __init__(self, executor: Any, optimize: bool = True, reuse_shuffles: bool | None = None,
                 adaptive: bool | None = None, broadcast_threshold: int | str | None = None,
                 skew_factor: float | str | None = None, skew_threshold: int | str | None = None):
        self.executor = executor
        #: the optimizer switch for the jobs that follow (``ctx.setOptimize``)
        self.optimize = bool(optimize)
        #: adaptive planning (``Context(adaptive=...)``, else ``OKPLAN_ADAPTIVE``) and its broadcast threshold
        self.adaptive = adaptive_enabled(adaptive)
        self.broadcast_threshold = broadcast_threshold_(broadcast_threshold)
        #: skew splitting: a join's reduce partition over this many times its side's median and over
        #: this many bytes runs as several tasks (``okplan/query_stages.py``)
        self.skew_factor = skew_factor_(skew_factor)
        self.skew_threshold = skew_threshold_(skew_threshold)
        self.stopped = False
        #: finished shuffles kept for later jobs (``reuse_shuffles``, else ``OKPLAN_REUSE_SHUFFLES``)
        self.reuse = ShuffleReuse(executor, reuse_enabled(reuse_shuffles))
        self._jobs = itertools.count(1)
        self._persisted: dict[int, str] = {}    # read and changed with single dict operations: thread-safe
        self._checkpoints: dict[int, str] = {}  # dataset id -> "reliable" | "local"
        #: node id -> (physical plan, metrics) of its latest jobs, for explain(analyze=True)
        self._analyzed: OrderedDict[int, tuple[PhysicalPlan, JobMetrics]] = OrderedDict()
        self._analyzed_lock = threading.Lock()

    def stop(self) -> None:
        """Refuse further jobs and stop the executor (dropping what it keeps)."""
        if not self.stopped:
            self.stopped = True
            self.reuse.clear()
            self.executor.stop()

    # -- caches and checkpoints ------------------------------------------------------------------------
    def persist(self, node: L.Node) -> None:
        """Keep ``node``'s partitions once a job computes them (``ds.cache()``).

        >>> ds = ctx.parallelize([1]); ctx.session.persist(ds._node); ctx.session.is_persisted(ds._node)
        True
        """
        self._persisted.setdefault(node.nid, f"cache-{node.nid}")

    def unpersist(self, node: L.Node) -> None:
        """Drop ``node``'s kept partitions; later jobs compute it again (``ds.unpersist()``).

        >>> ds = ctx.parallelize([1]).cache(); ctx.session.unpersist(ds._node); ds.is_cached
        False
        """
        cache_id = self._persisted.pop(node.nid, None)
        if cache_id is not None:
            self.executor.drop_cached(cache_id)

    def is_persisted(self, node: L.Node) -> bool:
        """True when ``node`` is marked to be kept (``ds.is_cached``).

        >>> ctx.session.is_persisted(ctx.parallelize([1])._node)
        False
        """
        return node.nid in self._persisted

    def checkpoint(self, node: L.Node, kind: str) -> None:
        """Mark ``node`` to be kept with its lineage cut (``kind``: ``"reliable"`` or ``"local"``).

        >>> ds = ctx.parallelize([1]); ctx.session.checkpoint(ds._node, "local"); ctx.session.checkpoint_kind(ds._node)
        'local'
        """
        self._checkpoints[node.nid] = kind
        self._persisted.setdefault(node.nid, f"checkpoint-{node.nid}")

    def checkpoint_kind(self, node: L.Node) -> str | None:
        """``"reliable"``, ``"local"`` or None (not marked).

        >>> ctx.session.checkpoint_kind(ctx.parallelize([1])._node) is None
        True
        """
        return self._checkpoints.get(node.nid)

    def is_checkpointed(self, node: L.Node) -> bool:
        """True once a job has filled the checkpoint of a marked ``node``.

        >>> ds = ctx.parallelize([1]); ds.localCheckpoint(); ctx.session.is_checkpointed(ds._node), ds.count()
        (False, 1)
        >>> ctx.session.is_checkpointed(ds._node)
        True
        """
        cache_id = self._persisted.get(node.nid)
        return node.nid in self._checkpoints and cache_id is not None and self.executor.has_cached(cache_id)

    def drop_cached(self, cache_id: str) -> None:
        """Drop a cache the session's callers made themselves (``toLocalIterator``'s temporary one)."""
        self.executor.drop_cached(cache_id)

    def with_caches(self, node: L.Node) -> LogicalPlan:
        """``node``'s plan with every kept dataset read from its cache (``CachedRead``), or filling it
        (``Persist``) when no job has computed it yet.

        >>> ds = ctx.parallelize([1]).map(str).cache()
        >>> type(ctx.session.with_caches(ds._node).root).__name__
        'Persist'
        """
        plan = LogicalPlan(node)
        if not self._persisted:
            return plan
        persisted, has_cached = self._persisted, self.executor.has_cached

        def swap(n: L.Node) -> L.Node | None:
            cache_id = persisted.get(n.nid)
            if cache_id is None:
                return None
            if has_cached(cache_id):
                return L.CachedRead(cache_id=cache_id, partitions=n.num_partitions, partitioner_=n.partitioner,
                                    lineage=n, label=n.label, callsite=n.callsite)
            return L.Persist(inputs=(n,), cache_id=cache_id, scope="context", label=n.label, callsite=n.callsite)

        return plan.transform(swap)

    # -- planning --------------------------------------------------------------------------------------
    def prepare(self, node: L.Node, optimize_: bool | None = None, lost: frozenset[str] = frozenset(),
                sample_bounds: bool = False, order_free: bool = False, concatenates: bool = False,
                job: int = 0) -> Prepared:
        """The plans of a job on ``node``: caches swapped in (reads of ``lost`` caches recompute them),
        optimized (as set, or as ``optimize_`` says), each shuffle either reusing a kept output or kept
        by this job, sorts' range bounds sampled when ``sample_bounds`` (that runs a sketch job per
        sort, so ``explain`` leaves them open) and then, when adaptive, joins re-planned from the size
        of their small side and small reduce stages coalesced (``okplan/adaptive.py``; ``order_free``:
        the job's answer depends only on the multiset of its records; ``concatenates``: only on the
        sequence of all partitions' records), stages.

        >>> p = ctx.session.prepare(ctx.parallelize([("a", 1)], 2).reduceByKey(add)._node)
        >>> len(p.physical.stages)
        2
        """
        logical = self.with_caches(node)
        if lost:  # reads of a lost cache planned elsewhere (sorts, toLocalIterator) compute it again
            logical = logical.transform(lambda n: _recompute_lost(n, lost))
        use = self.optimize if optimize_ is None else optimize_
        optimized, fired = optimize(logical) if use else (logical, [])
        shuffles = self.reuse.plan(node, optimized, lost)
        keep = ShuffleReuse.keep_map(shuffles)
        temporary: list[str] = []
        decisions: list[Decision] = []
        stages: _QueryStages | None = None
        if sample_bounds:
            reused = {slot: k for slot, k in keep.items() if k[1] is not None}

            def run(root: L.Node, action: PartitionAction, keeping: bool = False) -> list:
                """Sort bounds' sketch jobs and adaptive planning's jobs (on the optimized plan), reading
                reused shuffles too; ``keeping``: keeping the shuffles they write as reuse planned (the
                job will not run them: a broadcast side collected first)."""
                physical = plan_physical(LogicalPlan(root), keep=keep if keeping else reused)
                return [value for _, value in self.executor.run(physical, action, list(range(root.num_partitions)))]

            optimized, temporary = resolve_sort_bounds(optimized, run, frozenset(s[0] for s in reused))
            if self.adaptive and use:
                try:
                    optimized, decisions = plan_broadcasts(optimized, order_free, self.broadcast_threshold,
                                                           lambda root, action: run(root, action, keeping=True),
                                                           temporary)
                except BaseException:
                    for cache_id in temporary:
                        self.executor.drop_cached(cache_id)
                    raise
                optimized, coalesced = plan_coalescing(optimized, order_free, concatenates)
                decisions += coalesced
                if getattr(self.executor, "keeps_shuffles", False) and hasattr(self.executor, "pin_shuffle"):
                    stages = _QueryStages(self.executor, job, keep)
                    settings = Settings(self.broadcast_threshold, self.skew_factor, self.skew_threshold)
                    # reused outputs whose sizes an earlier job measured are re-planned from them
                    known = {p.slot: MapOutput((p.keep_id, p.reused_from, p.maps), p.records, p.bytes)
                             for p in shuffles if p.reused_from is not None and p.records}
                    try:
                        optimized, at_runtime, done = replan(optimized, order_free, concatenates, settings, stages,
                                                             frozenset(reused) - set(known), known)
                    except BaseException:
                        stages.release(set())
                        for cache_id in temporary:
                            self.executor.drop_cached(cache_id)
                        raise
                    decisions += at_runtime
                    keep = {**keep, **{slot: out.keep for slot, out in done.items()}}
        physical = plan_physical(optimized, keep=keep)
        physical.notes = [str(d) for d in decisions]
        if stages is None:
            return Prepared(logical, optimized, fired, physical, temporary, shuffles)
        return Prepared(logical, optimized, fired, physical, temporary, shuffles, stages.ran, stages.pinned)

    def plan(self, node: L.Node, optimize_: bool | None = None
             ) -> tuple[LogicalPlan, LogicalPlan, list[Firing], PhysicalPlan]:
        """The three plans of ``node`` as ``explain`` shows them: logical, optimized (+ rules fired),
        physical.

        >>> len(ctx.session.plan(ctx.parallelize([1]).map(str)._node)[3].stages)
        1
        """
        p = self.prepare(node, optimize_)
        return p.logical, p.optimized, p.fired, p.physical

    def explain(self, node: L.Node, mode: str = "full", analyze: bool = False, format: str = "text") -> str:
        """The plans of a job on ``node`` as text (``ds.toDebugString(mode)``); ``analyze`` (or mode
        ``metrics``): the physical plan with what its latest job measured (run now if it has not run);
        ``format="dot"``: the physical plan as Graphviz DOT (with figures when it ran).

        >>> print(ctx.session.explain(ctx.parallelize([1], 1)._node, "compact"))
        stage 0 [1 tasks]: Parallelize [1 partitions, 1 records] => result
        """
        if mode not in ("full", "compact", "physical", "metrics", "logical"):
            raise ValueError(f"explain() mode must be full, logical, physical, compact or metrics; got {mode!r}")
        if format == "dot":
            if analyze or node.nid in self._analyzed:
                physical, metrics = self.analyze(node)
                return render_dot(physical, metrics, f"job {metrics.job_id or ''}: {metrics.seconds * 1000:,.1f} ms")
            return render_dot(self.prepare(node).physical)
        if format != "text":
            raise ValueError(f"explain() format must be 'text' or 'dot', got {format!r}")
        if analyze or mode == "metrics":
            physical, metrics = self.analyze(node)
            return "\n".join([f"== Physical plan ({self.executor.name}), analyzed ==", _job_line(metrics),
                              *(f"ran {where}" for where in metrics.placement),   # local[N]: stage by stage
                              render_physical(physical, metrics)])
        p = self.prepare(node)
        if mode == "compact":
            return render_compact(p.physical)
        if mode == "physical":
            return render_physical(p.physical)
        if mode == "logical":
            return render_tree(p.logical.root)
        parts = ["== Logical plan ==", render_tree(p.logical.root), "",
                 "== Optimized plan ==" + ("" if self.optimize else " (optimizer off)")]
        if p.fired:
            parts.append("rules fired:")
            parts += [f"  {f.rule}: {f.node}: {f.note}" for f in p.fired]
        elif self.optimize:
            parts.append("rules fired: none")
        parts += [render_tree(p.optimized.root), "", f"== Physical plan ({self.executor.name}) =="]
        placement = getattr(self.executor, "placement", None)
        if placement is not None and getattr(self.executor, "processes", 1) > 1:
            parts.append(f"runs {placement(p.physical)}")  # local[N]: on the pool, or in-process and why
        parts.append(render_physical(p.physical))
        return "\n".join(parts)

    def analyze(self, node: L.Node) -> tuple[PhysicalPlan, JobMetrics]:
        """The plan and figures of ``node``'s latest job, running one (every partition, records
        discarded) if it has not run on this Context."""
        with self._analyzed_lock:
            found = self._analyzed.get(node.nid)
        if found is None:
            self.run_job(node, PartitionAction(_count, "explain(analyze=True)", counts=int), None)
            with self._analyzed_lock:
                found = self._analyzed.get(node.nid)
            if found is None:  # nothing ran: no partitions
                found = (self.prepare(node).physical, JobMetrics(self.executor.name))
        return found

    def _remember(self, nid: int, physical: PhysicalPlan,
                  stages_first: list[tuple[PhysicalPlan, JobMetrics | None]] = ()) -> None:  # type: ignore[assignment]
        """Keep the plan and figures of the job this thread just ran, for ``explain(analyze=True)``
        (map stages that ran first as adaptive query stages shown in place, with their figures)."""
        metrics = self.executor.last_metrics
        if metrics is None:
            return
        metrics.notes = list(physical.notes)
        if stages_first:
            # a copy: the executor's own figures stay those of the job it ran (getProfile() adds jobs up)
            metrics = dataclasses.replace(metrics, stages=dict(metrics.stages))
            physical = _with_stages_first(physical, metrics, stages_first)
        with self._analyzed_lock:
            self._analyzed[nid] = (physical, metrics)
            self._analyzed.move_to_end(nid)
            while len(self._analyzed) > _ANALYZED_JOBS:
                self._analyzed.popitem(last=False)

    # -- running ---------------------------------------------------------------------------------------
    def run_job(self, node: L.Node, action: PartitionAction, partitions: list[int] | None) -> list:
        """Run ``action`` on the given partitions of ``node`` (all when None); their values in order.
        Threads of one Context run their jobs at once (executors are thread-safe).

        >>> ctx.session.run_job(ctx.parallelize(range(4), 2)._node, PartitionAction(list, "collect"), [1])
        [[2, 3]]
        """
        try:
            return list(self.run_job_iter(node, action, partitions))
        except Exception as exc:
            trim(exc)
            raise

    def run_job_iter(self, node: L.Node, action: PartitionAction, partitions: list[int] | None) -> Iterator[Any]:
        """``run_job`` as an iterator that runs partitions as they are asked for (``take``); planning
        happens, and planning errors raise, at the call. Close it to stop early.

        >>> next(ctx.session.run_job_iter(ctx.parallelize(range(4), 2)._node, PartitionAction(list, "take"), None))
        [0, 1]
        """
        if self.stopped:
            raise RuntimeError("this Context was stopped; create a new Context()")
        wake = getattr(self.executor, "wake", None)
        if wake is not None:
            wake()  # a cluster's processes wake up while this job is planned, not when its tasks come
        parts = list(range(node.num_partitions)) if partitions is None else list(partitions)
        if not parts:
            # nothing to compute: no partitions means no tasks, so no executor is involved
            return iter(())
        if self.optimize and action.answer is not None and partitions is None:
            known = action.answer(self.with_caches(node).root)
            if known is not None:
                return iter((known,))
        results = self._run_from_lineage(node, action, parts)
        next(results)  # plan now, so that planning errors and sort bounds' jobs happen at the call
        return results

    def _run_from_lineage(self, node: L.Node, action: PartitionAction, parts: list[int]) -> Iterator[Any]:
        """Plan and run; when a cached dataset the plan reads turns out to be gone (evicted, expired,
        unpersisted by another thread), plan again, which recomputes it from its lineage, and go on
        with the partitions not yet delivered. Yields None once planned, then the results."""
        delivered = 0
        planned = False
        lost: set[str] = set()
        job = next(self._jobs)
        whole = parts == list(range(node.num_partitions))
        order_free, concatenates = action.order_free and whole, action.concatenates and whole
        for attempt in range(_CACHE_LOST_RETRIES + 1):
            try:
                prepared = self.prepare(node, lost=frozenset(lost), sample_bounds=True, order_free=order_free,
                                        concatenates=concatenates, job=job)
            except CacheLostError as e:
                # a job of the planning (a side collected, map stages run first) found a kept output gone
                if attempt == _CACHE_LOST_RETRIES or not e.cache_id:
                    raise
                lost.add(e.cache_id)
                continue
            if prepared.physical.notes and concatenates:
                # adaptive planning changed the partitioning where the answer cannot tell
                parts = list(range(prepared.physical.result_stage.num_partitions))
            results = self.executor.run(prepared.physical, action, parts[delivered:])
            try:
                if not planned:
                    planned = True
                    yield None
                for _, value in results:
                    delivered += 1
                    yield value
                return
            except CacheLostError as e:
                if attempt == _CACHE_LOST_RETRIES:
                    raise
                if e.cache_id:
                    lost.add(e.cache_id)
            finally:
                close = getattr(results, "close", None)
                if close is not None:
                    close()
                self._remember(node.nid, prepared.physical, prepared.stages_first)
                for cache_id in prepared.temporary:
                    self.executor.drop_cached(cache_id)
                if prepared.pinned:
                    _QueryStages.unpin(self.executor, prepared.pinned, {p.keep_id for p in prepared.shuffles})
                self.reuse.finished(job, node, prepared.shuffles, _kept_maps(prepared),
                                    _kept_sizes(prepared, self.executor.last_metrics))


_stage_ids = itertools.count(1)


class _QueryStages:
    """Runs a job's map stages first for ``query_stages.replan``: a job on the executor whose result
    stage runs no task, its shuffles kept pinned (whatever the budget) until the job ends, under the id
    shuffle reuse planned for them (so later jobs reuse them too) or one of their own."""

    def __init__(self, executor: Any, job: int, keep: dict):
        self.executor = executor
        self.job = job
        self.keep = keep                          # shuffle reuse's plan: slot -> (keep id, reused from, maps)
        self.pinned: dict[str, int] = {}          # keep id -> map outputs
        self.ran: list[tuple[PhysicalPlan, JobMetrics | None]] = []

    def _keep_map(self, done: dict) -> dict:
        # shuffles below the ones run first are kept as shuffle reuse planned (the job will not run
        # them again: they are below a skipped stage), so later jobs can still reuse them
        keep = dict(self.keep)
        keep.update({slot: out.keep for slot, out in done.items()})
        return keep

    def run_maps(self, shuffles: list[tuple[tuple[int, int], L.Node]], done: dict) -> dict:
        keep = self._keep_map(done)
        slot_of: dict[str, tuple[int, int]] = {}
        for slot, reader in shuffles:
            planned = self.keep.get(slot)
            keep_id = planned[0] if planned is not None and planned[1] is None else \
                f"stage-{os.getpid()}-{next(_stage_ids)}"
            self.executor.pin_shuffle(keep_id, reusable=planned is not None and planned[1] is None)
            self.pinned[keep_id] = 0
            keep[(reader.nid, -1)] = (keep_id, None, 0)
            slot_of[keep_id] = slot
        readers = [r for _, r in shuffles]
        root = readers[0] if len(readers) == 1 else L.Union(inputs=tuple(readers))
        physical = plan_physical(LogicalPlan(root), keep=keep)
        for _ in self.executor.run(physical, PartitionAction(_count, "adaptive: map stages first", counts=int), []):
            pass
        metrics = self.executor.last_metrics
        if metrics is not None:
            found = metrics.stages.get(physical.result_stage.id)
            if found is not None and not found.tasks:
                del metrics.stages[physical.result_stage.id]  # the query stage's job ran no result task
        self.ran.append((physical, metrics))
        outputs = {}
        for stage in physical.stages:
            out = stage.output
            if isinstance(out, ShuffleWrite) and out.keep_id in slot_of and out.reused_from is None:
                m = metrics.stages.get(stage.id) if metrics is not None else None
                n = out.partitioner.num_partitions
                records = list(m.partition_records if m is not None else ())[:n]
                sizes = list(m.partition_bytes if m is not None else ())[:n]
                self.pinned[out.keep_id] = stage.num_partitions
                outputs[slot_of[out.keep_id]] = MapOutput(
                    (out.keep_id, self.job, stage.num_partitions), tuple(records + [0] * (n - len(records))),
                    tuple(sizes + [0] * (n - len(sizes))))
        return outputs

    def read_back(self, reader: L.Node, output: MapOutput) -> list[list]:
        physical = plan_physical(LogicalPlan(reader), keep={(reader.nid, -1): output.keep})
        action = PartitionAction(_to_list, "adaptive: broadcast side", counts=len)
        return [v for _, v in self.executor.run(physical, action, list(range(reader.num_partitions)))]

    def release(self, planned: set[str]) -> None:
        self.unpin(self.executor, self.pinned, planned)

    @staticmethod
    def unpin(executor: Any, pinned: dict[str, int], planned: set[str]) -> None:
        """Unpin a job's outputs; those shuffle reuse did not plan go (it keeps the others, or drops them)."""
        for keep_id in pinned:
            executor.unpin_shuffle(keep_id)
            if keep_id not in planned:
                executor.drop_kept_shuffle(keep_id)


def _kept_maps(prepared: Prepared) -> dict[str, int]:
    """Keep id -> map outputs of the shuffles a job wrote to keep, those its map stages run first wrote
    too: adaptive planning may have coalesced the stage writing one below them (fewer map outputs than
    the plan without it has), so a later job reusing it must read the outputs there are."""
    maps = dict(prepared.pinned)
    for plan, _ in prepared.stages_first:
        maps.update(plan.kept_maps())
    maps.update(prepared.physical.kept_maps())
    return maps


def _kept_sizes(prepared: Prepared, metrics: JobMetrics | None) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Keep id -> records and bytes per reduce partition of the shuffles a job wrote to keep."""
    sizes = {}
    for plan, m in [(prepared.physical, metrics), *prepared.stages_first]:
        if m is None:
            continue
        for stage in plan.stages:
            out = stage.output
            found = m.stages.get(stage.id)
            if isinstance(out, ShuffleWrite) and out.keep_id and out.reused_from is None and found is not None:
                sizes[out.keep_id] = (tuple(found.partition_records), tuple(found.partition_bytes))
    return sizes


def _with_stages_first(physical: PhysicalPlan, metrics: JobMetrics,
                       ran: list[tuple[PhysicalPlan, JobMetrics | None]]) -> PhysicalPlan:
    """The job's plan with each stage that ran first as a query stage shown as it ran (its operators,
    its figures in ``metrics``) instead of as a skipped stage."""
    first: dict[str, tuple[Stage, Any, str]] = {}
    for plan, m in ran:
        for stage in plan.stages:
            out = stage.output
            if isinstance(out, ShuffleWrite) and out.keep_id is not None and out.reused_from is None:
                first[out.keep_id] = (stage, m.stages.get(stage.id) if m is not None else None,
                                      (m.job_id if m is not None else None) or "-")
    stages = []
    for stage in physical.stages:
        out = stage.output
        found = first.get(out.keep_id) if isinstance(out, ShuffleWrite) and out.keep_id else None
        if found is None or out.reused_from is None:
            stages.append(stage)
            continue
        ran_stage, m, job_id = found
        stages.append(dataclasses.replace(stage, root=RanFirst(out.keep_id, out.reused_from, job_id),
                                          output=dataclasses.replace(out, reused_from=None), labels=ran_stage.labels))
        found_here = metrics.stages.get(stage.id)
        if m is not None and (found_here is None or not found_here.tasks):  # (a cluster reports it, empty)
            metrics.stages[stage.id] = dataclasses.replace(m, stage_id=stage.id)
    return PhysicalPlan(stages, physical.shuffles, physical.notes, list(ran))


def _recompute_lost(n: L.Node, lost: frozenset[str]) -> L.Node | None:
    """A read of a lost cache becomes the ``Persist`` of its lineage (which fills the cache again)."""
    if isinstance(n, L.CachedRead) and n.cache_id in lost and n.lineage is not None:
        return L.Persist(inputs=(n.lineage,), cache_id=n.cache_id, scope="context", label=n.label,
                         callsite=n.callsite)
    return None


def _job_line(m: JobMetrics) -> str:
    """The job's totals above its analyzed plan."""
    tasks = sum(s.tasks for s in m.stages.values())
    line = f"job {m.job_id or '-'}: {m.seconds * 1000:,.2f} ms, {tasks} tasks"
    if m.records_shuffled:
        line += f", {m.records_shuffled:,} records shuffled"
    if m.bytes_written or m.bytes_read:
        line += f", {m.bytes_written:,} B written / {m.bytes_read:,} B read in Redis"
    if m.retries:
        line += f", {m.retries} retries"
    if len(m.tasks_per_worker) > 1:
        line += ", tasks per worker: " + ", ".join(f"{w} {n}" for w, n in sorted(m.tasks_per_worker.items()))
    return line
