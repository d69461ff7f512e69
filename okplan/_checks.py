"""Argument checks for the API: a wrong argument fails at the call, with a message that says what to do."""

from __future__ import annotations

import os
import sys
from typing import Any

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def check_callable(f: Any, method: str, arg: str = "f") -> None:
    if not callable(f):
        raise TypeError(f"{method}() expects a function for {arg}, got {type(f).__name__} {f!r:.40}")


def check_partitions(n: Any, method: str, arg: str = "numPartitions", allow_none: bool = True) -> None:
    if n is None and allow_none:
        return
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{method}() expects an int for {arg}, got {type(n).__name__} {n!r:.40}")
    if n < 1:
        raise ValueError(f"{method}() needs {arg} >= 1, got {n}")


def check_int(n: Any, method: str, arg: str, minimum: int | None = None) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{method}() expects an int for {arg}, got {type(n).__name__} {n!r:.40}")
    if minimum is not None and n < minimum:
        raise ValueError(f"{method}() needs {arg} >= {minimum}, got {n}")


def check_dataset(other: Any, method: str, cls: type, ctx: Any) -> None:
    if not isinstance(other, cls):
        raise TypeError(f"{method}() expects a DataSet, got {type(other).__name__}")
    if other.context is not ctx:
        raise ValueError(f"{method}() cannot combine datasets of two different Contexts")


def user_callsite() -> str | None:
    """``file:line`` of the first frame outside okplan: where the user built this dataset."""
    f = sys._getframe(2)
    while f is not None:
        filename = f.f_code.co_filename
        if not filename.startswith(_PACKAGE_DIR):
            return f"{os.path.basename(filename)}:{f.f_lineno}"
        f = f.f_back
    return None
