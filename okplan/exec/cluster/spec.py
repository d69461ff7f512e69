"""The job spec: what the master and the workers must know about a physical plan besides its functions.

The client builds it once per job. It is plain data (pickled with the C pickler), so the master can
schedule and clean up without ever unpickling user code.

>>> from okplan import Context
>>> ctx = Context()
>>> plan = ctx.session.plan(ctx.parallelize([("a", 1)], 2).reduceByKey(lambda a, b: a + b)._node)[3]
>>> spec = build_spec("j1", "c1", plan, [0, 1])
>>> [s["kind"] for s in spec["stages"]], spec["shuffles"], list(spec["sources"].values())
(['shuffle', 'result'], {0: 2}, [2])
"""

from __future__ import annotations

import sys
from typing import Any, Iterator

from ...physical.operators import PhysOp, ReadMaterialized, ReadSource
from ...physical.render import operator_lines
from ...physical.stage import Materialize, PhysicalPlan, ShuffleWrite, Stage

JobSpec = dict[str, Any]


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


def _stage_info(stage: Stage) -> dict[str, Any]:
    out = stage.output
    info: dict[str, Any] = {"id": stage.id, "n": stage.num_partitions, "parents": tuple(stage.parents),
                            "labels": list(stage.labels), "ops": operator_lines(stage)}
    if isinstance(out, ShuffleWrite):
        info.update(kind="shuffle", shuffle_id=out.shuffle_id, buckets=out.partitioner.num_partitions)
    elif isinstance(out, Materialize):
        info.update(kind="mat", cache_id=out.cache_id, scope=out.scope)
    else:
        info.update(kind="result")
    return info


def build_spec(job_id: str, client: str, plan: PhysicalPlan, partitions: list[int], *,
               ttl: int = 3600, cache_ttl: int | None = None, inline_max: int = 1 << 16,
               task_memory: int | None = None, profile: bool = False, app: str | None = None) -> JobSpec:
    """The spec of one job of client ``client`` running ``plan`` on result ``partitions``; ``profile``
    asks workers to time operators, ``app`` names the application on the master's dashboard."""
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
        "stages": [_stage_info(s) for s in plan.stages],
        "partitions": list(partitions),
        "shuffles": dict(plan.shuffles),
        "sources": sources,
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
