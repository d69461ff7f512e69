"""Predicates the optimizer derives when it moves a filter below an operator that changes the record
shape: ``filter(p)`` over ``values()`` is ``filter(OnValue(p))`` below it."""

from __future__ import annotations

from typing import Any, Callable

from .nodes import func_name


class OnKey:
    """``p(record[0])``: a predicate on the key of a pair."""

    __slots__ = ("p", "__qualname__")

    def __init__(self, p: Callable[[Any], bool]):
        self.p = p
        self.__qualname__ = f"key: {func_name(p)}"

    def __call__(self, kv: Any) -> bool:
        return self.p(kv[0])


class OnValue:
    """``p(record[1])``: a predicate on the value of a pair."""

    __slots__ = ("p", "__qualname__")

    def __init__(self, p: Callable[[Any], bool]):
        self.p = p
        self.__qualname__ = f"value: {func_name(p)}"

    def __call__(self, kv: Any) -> bool:
        return self.p(kv[1])
