"""What every executor offers the API layer."""

from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

from ..physical.stage import PhysicalPlan
from .metrics import JobMetrics


class Executor(Protocol):
    """Runs physical plans. ``local`` runs them in this process; the cluster hands them to workers."""

    name: str
    default_parallelism: int
    last_metrics: JobMetrics | None

    def run(self, plan: PhysicalPlan, action: Callable[[Iterator], Any],
            partitions: list[int]) -> Iterator[tuple[int, Any]]:
        """Run the plan's parent stages, then the result stage on ``partitions``; yield
        ``(partition, action result)`` in the order of ``partitions``. Closing the iterator early
        (``take``) stops the job and frees its intermediate data."""
        ...

    def has_cached(self, cache_id: str) -> bool: ...

    def drop_cached(self, cache_id: str) -> None: ...

    def save_named(self, label: str, partitions: list[list]) -> None: ...

    def load_named(self, label: str) -> list[list] | None: ...

    def list_named(self) -> list[str]: ...

    def drop_named(self, label: str) -> bool: ...

    def stop(self) -> None: ...
