"""Plain-data views of the master's state for its dashboard and ``okplan status``.

Built by the master's own (single) thread, as fresh dicts and lists that nobody mutates afterwards, so
the dashboard's HTTP thread can serialise them while the master goes on changing its live state.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .jobstate import JobRun
    from .master import Master


def job_view(job: "JobRun", now: float) -> dict[str, Any]:
    """One job: its app, state, seconds and, per stage, progress and figures."""
    stages = []
    for s in job.order:
        m = s.metrics
        m.finish()
        info = s.info
        stages.append({
            "id": s.id, "kind": m.kind, "labels": list(info.get("labels", ())), "parents": list(info["parents"]),
            "ops": list(info.get("ops", ())), "tasks": len(s.needed), "done": len(s.done),
            "running": len(s.running), "records_in": m.records_in, "records_out": m.records_out,
            "bytes_raw": m.bytes_raw, "bytes_compressed": m.bytes_compressed, "spill_bytes": m.spill_bytes,
            "seconds": m.seconds, "skew": m.skew, "retries": m.retries,
        })
    ended = job.ended if job.ended is not None else now
    return {"id": job.id, "app": job.spec.get("app"), "client": job.spec.get("client"), "state": job.state,
            "submitted": job.submitted_at, "seconds": ended - job.started, "retries": job.retries,
            "error": job.error, "stages": stages,
            "labels": sorted({label for st in stages for label in st["labels"]}),
            "tasks": sum(st["tasks"] for st in stages), "done": sum(st["done"] for st in stages)}


def master_view(master: "Master") -> dict[str, Any]:
    """Workers, running jobs and recently ended ones (newest first)."""
    now = time.monotonic()
    workers = [{"name": w.name, "host": w.host, "pid": w.pid, "slots": w.slots, "running": len(w.running),
                "tasks_done": w.tasks_done, "seen_ago": round(now - w.last_seen, 3)}
               for w in master.workers.values()]
    running = [job_view(j, now) for j in master.jobs.values() if j.state == "running"]
    return {"endpoint": master.endpoint, "redis": master.redis_shown, "time": time.time(),
            "uptime": now - master.started, "workers": workers, "slots": sum(w["slots"] for w in workers),
            "jobs": running + list(reversed(master.recent_jobs))}
