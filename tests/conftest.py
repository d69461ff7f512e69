"""Shared fixtures. ``ctx`` runs a test once per executor: every executor runs the same behavioural suite.

Executors come from ``OKPLAN_TEST_MASTERS`` (comma-separated), default ``local``, ``local[2]+pool``
(local[2] with every job on its two task processes, however small) and ``local-cluster[2]``.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from okplan import Context


def _masters() -> list[str]:
    env = os.environ.get("OKPLAN_TEST_MASTERS")
    if env:
        return [m.strip() for m in env.split(",") if m.strip()]
    masters = ["local", "local[2]+pool"]
    if importlib.util.find_spec("okplan.exec.cluster.launcher") is not None:
        masters.append("local-cluster[2]")
    return masters


MASTERS = _masters()


@pytest.fixture(scope="session", params=MASTERS)
def ctx(request):
    """A Context per executor, shared by the whole session (a local cluster starts once)."""
    master = request.param
    # "+pool": the size heuristic off, so that the suite's small jobs run on the task processes too; a
    # stage that moves every record runs its first partition in-process and the rest on the task
    # processes, so that every job also reads blocks across both homes. "+auto" (not run by default:
    # OKPLAN_TEST_MASTERS=local[2]+auto) is the same with the default policy, whose probes split stages by
    # their cost, hand tasks out from a thread and take some back
    options = {}
    if master.endswith(("+pool", "+auto")):
        options = {"pool_min_records": 0, "pool_min_bytes": 0,
                   "pool_policy": "mixed" if master.endswith("+pool") else "auto"}
    c = Context(master.removesuffix("+pool").removesuffix("+auto"), **options)
    yield c
    c.stop()


@pytest.fixture
def local_ctx():
    """A fresh in-process Context for tests that only concern planning or the local executor."""
    c = Context("local[2]")
    yield c
    c.stop()
