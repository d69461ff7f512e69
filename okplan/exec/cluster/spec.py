"""The job spec: what the master and the workers must know about a physical plan besides its functions.

The client builds it once per job. It is plain data, sent as MessagePack (``encode_spec``), so the
master can schedule and clean up without ever unpickling anything; ``decode_spec`` checks its shape
before the master trusts a single field of it.

>>> from okplan import Context
>>> ctx = Context()
>>> plan = ctx.session.plan(ctx.parallelize([("a", 1)], 2).reduceByKey(lambda a, b: a + b)._node)[3]
>>> spec = build_spec("j1", "c1", plan, [0, 1])
>>> [s["kind"] for s in spec["stages"]], spec["shuffles"], list(spec["sources"].values())
(['shuffle', 'result'], {0: 2}, [2])
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Iterator, Literal, NotRequired, TypedDict

import msgspec

from ...physical.operators import PhysOp, ReadMaterialized, ReadRange, ReadSource, ShuffleRead
from ...physical.render import operator_lines
from ...physical.stage import Materialize, PhysicalPlan, ShuffleWrite, Stage

JobSpec = dict[str, Any]

#: more partitions than any job of a cluster has; bounds what a hostile spec can make the master allocate
_MAX_N = 1 << 20
_Count = Annotated[int, msgspec.Meta(ge=0, le=_MAX_N)]
_Id = Annotated[str, msgspec.Meta(max_length=256)]


class _StageInfo(TypedDict):
    id: int
    n: _Count
    parents: list[int]
    kind: Literal["shuffle", "mat", "result"]
    shuffle_id: NotRequired[int]
    buckets: NotRequired[_Count]
    cache_id: NotRequired[_Id]
    scope: NotRequired[_Id]
    #: a shuffle kept by an earlier job: complete from the start, no task runs (shuffle reuse)
    reused: NotRequired[bool]
    records: NotRequired[int]
    #: the stage also reads what its parent stages write: the master adds their records once they ran
    plus_parents: NotRequired[bool]


class _Spec(TypedDict):
    job_id: _Id
    client: _Id
    stages: Annotated[list[_StageInfo], msgspec.Meta(min_length=1, max_length=10_000)]
    partitions: list[_Count]
    shuffles: dict[int, _Count]
    sources: dict[_Id, _Count]
    cache_scopes: dict[_Id, _Id]
    ttl: int
    cache_ttl: int | None
    inline_max: int
    sys_path: list[str]
    #: shuffle id -> keep id, for shuffles whose output outlives the job (``okplan:kept:`` keys)
    kept: NotRequired[dict[int, _Id]]
    #: source blocks small enough to travel in the spec instead of Redis: {key: block}
    inline_blocks: NotRequired[dict[str, bytes]]
    #: how many side files (addFile/addPyFile) the client published: none, no manifest to read
    side_files: NotRequired[int]


class SpecError(ValueError):
    """A job spec that is not one a client of this okplan version builds."""


def encode_spec(spec: JobSpec) -> bytes:
    """The spec as MessagePack bytes (what SUBMIT carries).

    >>> decode_spec(encode_spec(spec))["shuffles"]          # doctest: +SKIP
    {0: 2}
    """
    return msgspec.msgpack.encode(spec)


def decode_spec(blob: bytes) -> JobSpec:
    """The spec in ``blob``, checked: fields and types, stage parents that come earlier, a last stage
    that is the result stage, result partitions in its range. ``SpecError`` says what is wrong.
    Fields this version does not know are kept (a newer client's additions reach the workers)."""
    try:
        spec = msgspec.msgpack.decode(blob)
        msgspec.convert(spec, _Spec)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        raise SpecError(f"malformed job spec: {e}") from None
    seen: set[int] = set()
    for info in spec["stages"]:
        if info["id"] in seen or not set(info["parents"]) <= seen:
            raise SpecError(f"stage {info['id']}: repeated, or a parent that does not come before it")
        if info["kind"] == "shuffle" and ("shuffle_id" not in info or "buckets" not in info):
            raise SpecError(f"shuffle stage {info['id']} without shuffle_id/buckets")
        if info["kind"] == "mat" and ("cache_id" not in info or "scope" not in info):
            raise SpecError(f"materialize stage {info['id']} without cache_id/scope")
        if info.get("reused") and (info["kind"] != "shuffle" or info["shuffle_id"] not in spec.get("kept", {})):
            raise SpecError(f"stage {info['id']}: only a kept shuffle can be reused")
        if info["kind"] == "result" and info is not spec["stages"][-1]:
            raise SpecError("the result stage must be the last stage")
        seen.add(info["id"])
    last = spec["stages"][-1]
    if last["kind"] != "result" or any(p >= last["n"] for p in spec["partitions"]):
        raise SpecError("the last stage must be the result stage, and result partitions in its range")
    return spec


def walk(op: PhysOp) -> Iterator[PhysOp]:
    """Every operator of a stage's tree, the root first."""
    stack = [op]
    while stack:
        o = stack.pop()
        yield o
        stack.extend(o.children())


def sources_to_upload(plan: PhysicalPlan) -> dict[str, ReadSource]:
    """Source operators that still hold their data, by source id."""
    found: dict[str, ReadSource] = {}
    for stage in plan.stages:
        for op in walk(stage.root):
            if type(op) is ReadSource and op.has_data:
                found.setdefault(op.source_id, op)
    return found


def kept_shuffles(plan: PhysicalPlan) -> dict[int, str]:
    """Shuffle id -> keep id of the plan's shuffles whose output outlives the job (shuffle reuse)."""
    return {s.output.shuffle_id: s.output.keep_id for s in plan.stages
            if isinstance(s.output, ShuffleWrite) and s.output.keep_id is not None}


def _stage_info(stage: Stage, writers: dict[tuple[str, Any], Stage], known: dict[str, int]) -> dict[str, Any]:
    out = stage.output
    info: dict[str, Any] = {"id": stage.id, "n": stage.num_partitions, "parents": tuple(stage.parents),
                            "labels": list(stage.labels), "ops": operator_lines(stage)}
    if isinstance(out, ShuffleWrite):
        info.update(kind="shuffle", shuffle_id=out.shuffle_id, buckets=out.partitioner.num_partitions)
        if out.reused_from is not None:
            info["reused"] = True
    elif isinstance(out, Materialize):
        info.update(kind="mat", cache_id=out.cache_id, scope=out.scope)
    else:
        info.update(kind="result")
    found = _input_records(stage, writers, known)
    if found is not None:
        info["records"], plus_parents = found
        if plus_parents:
            info["plus_parents"] = True
    return info


def _input_records(stage: Stage, writers: dict[tuple[str, Any], Stage],
                   known: dict[str, int]) -> tuple[int, bool] | None:
    """``(records, plus_parents)`` when the records the stage reads are known before it runs, else
    None: parallelized data and ranges, caches and kept shuffles of earlier jobs whose records the
    client knows (``known``, by cache or keep id), plus (``plus_parents``) the outputs of the job's
    own earlier stages, which the master counts as they run. The master batches the tasks of a stage
    with small inputs from the start."""
    total, plus_parents = 0, False
    for op in walk(stage.root):
        kind = type(op)
        if kind is ReadSource:
            total += op.records
        elif kind is ReadRange:
            total += len(range(op.start, op.stop, op.step))
        elif kind is ShuffleRead or kind is ReadMaterialized:
            writer = writers.get(("shuffle", op.shuffle_id) if kind is ShuffleRead else ("mat", op.cache_id))
            out = writer.output if writer is not None else None
            if out is not None and getattr(out, "reused_from", None) is None:
                plus_parents = True  # written by this job
                continue
            n = known.get(out.keep_id if isinstance(out, ShuffleWrite) else getattr(op, "cache_id", None))
            if n is None:
                return None
            total += n
        elif not op.children():
            return None  # files: not known here
    return total, plus_parents


def build_spec(job_id: str, client: str, plan: PhysicalPlan, partitions: list[int], *,
               ttl: int = 3600, cache_ttl: int | None = None, inline_max: int = 1 << 16,
               task_memory: int | None = None, profile: bool = False, app: str | None = None,
               known_records: dict[str, int] | None = None) -> JobSpec:
    """The spec of one job of client ``client`` running ``plan`` on result ``partitions``; ``profile``
    asks workers to time operators, ``app`` names the application on the master's dashboard,
    ``known_records`` the records of caches and kept shuffles of earlier jobs (by cache or keep id)."""
    writers: dict[tuple[str, Any], Stage] = {}
    for stage in plan.stages:
        out = stage.output
        if isinstance(out, ShuffleWrite):
            writers[("shuffle", out.shuffle_id)] = stage
        elif isinstance(out, Materialize):
            writers[("mat", out.cache_id)] = stage
    cache_scopes: dict[str, str] = {}
    for stage in plan.stages:
        if isinstance(stage.output, Materialize):
            cache_scopes[stage.output.cache_id] = stage.output.scope
        for op in walk(stage.root):
            if isinstance(op, ReadMaterialized):
                cache_scopes.setdefault(op.cache_id, op.scope)
    sources = {sid: op.num_partitions for sid, op in sources_to_upload(plan).items()}
    return {
        "job_id": job_id,
        "client": client,
        "stages": [_stage_info(s, writers, known_records or {}) for s in plan.stages],
        "partitions": list(partitions),
        "shuffles": dict(plan.shuffles),
        "sources": sources,
        "kept": kept_shuffles(plan),
        "cache_scopes": cache_scopes,
        "ttl": ttl,
        "cache_ttl": cache_ttl,
        "inline_max": inline_max,
        "profile": profile,
        "app": app,
        #: bytes a task may hold before it spills (None: the worker's OKPLAN_TASK_MEMORY or 512m)
        "task_memory": task_memory,
        # so that workers on this machine can import the modules this client's functions come from
        "sys_path": [p for p in sys.path if p],
    }
