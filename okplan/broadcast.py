"""Broadcast variables: a read-only value tasks reach through ``.value``."""

from __future__ import annotations

import itertools
from typing import Any

_ids = itertools.count(1)


class Broadcast:
    """A value shipped to tasks with the job's functions (once per job, not once per record).

    >>> b = ctx.broadcast([1, 2, 3])
    >>> b.value
    [1, 2, 3]
    """

    def __init__(self, value: Any):
        self.bid = next(_ids)
        self._value = value
        self._destroyed = False

    @property
    def value(self) -> Any:
        if self._destroyed:
            raise RuntimeError("this broadcast variable was destroyed")
        return self._value

    def unpersist(self, blocking: bool = False) -> None:
        """Kept for PySpark compatibility: okplan ships the value with each job, nothing to drop."""

    def destroy(self, blocking: bool = False) -> None:
        self._destroyed = True
        self._value = None

    def __repr__(self) -> str:
        return f"Broadcast<id={self.bid}>"
