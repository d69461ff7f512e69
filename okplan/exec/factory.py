"""Which executor a ``master`` string means."""

from __future__ import annotations

import os
import re
from typing import Any

from ..errors import ConfigurationError
from .local import LocalExecutor

_LOCAL = re.compile(r"^local(?:\[(\*|\d+)\])?$")
_LOCAL_CLUSTER = re.compile(r"^local-cluster\[(\d+)\]$")


def make_executor(master: str, **options: Any):
    """``local``, ``local[N]``, ``local[*]``, ``local-cluster[N]`` or ``tcp://host:port``."""
    m = _LOCAL.match(master)
    if m:
        n = m.group(1)
        parallelism = None if n in (None, "*") else int(n)
        if parallelism == 0:
            raise ConfigurationError("local[N] needs N >= 1")
        # "local" is today's in-process executor; local[N] and local[*] run big jobs on N processes
        processes = 1 if n is None else (os.cpu_count() or 1) if n == "*" else int(n)
        pool = {k: options[k] for k in ("pool_min_records", "pool_min_bytes", "pool_policy") if k in options}
        return LocalExecutor(parallelism, processes, task_memory=options.get("task_memory"), **pool)
    m = _LOCAL_CLUSTER.match(master)
    if m:
        from .cluster.launcher import LocalCluster  # noqa: PLC0415 - only cluster users pay the import

        return LocalCluster(int(m.group(1)), **options)
    if master.startswith("tcp://"):
        from .cluster.client import ClusterExecutor  # noqa: PLC0415

        return ClusterExecutor(master, **options)
    raise ConfigurationError(
        f"unknown master {master!r}: use 'local', 'local[N]', 'local-cluster[N]' or 'tcp://host:port'"
    )
