"""Shared fixtures. ``ctx`` runs a test once per executor: every executor runs the same behavioural suite.

Executors come from ``OKPLAN_TEST_MASTERS`` (comma-separated), default ``local`` plus
``local-cluster[2]`` once the cluster executor is importable.
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
    masters = ["local"]
    if importlib.util.find_spec("okplan.exec.cluster.launcher") is not None:
        masters.append("local-cluster[2]")
    return masters


MASTERS = _masters()


@pytest.fixture(scope="session", params=MASTERS)
def ctx(request):
    """A Context per executor, shared by the whole session (a local cluster starts once)."""
    c = Context(request.param)
    yield c
    c.stop()


@pytest.fixture
def local_ctx():
    """A fresh in-process Context for tests that only concern planning or the local executor."""
    c = Context("local[2]")
    yield c
    c.stop()
