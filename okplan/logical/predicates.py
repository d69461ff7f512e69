"""Predicates the optimizer derives when it moves a filter below an operator that changes the record
shape: ``filter(p)`` over ``values()`` is ``filter(OnValue(p))`` below it."""

from __future__ import annotations

from typing import Any, Callable

from .nodes import func_name


class OnItem:
    """``p(record[index])``: a predicate on one item of a pair."""

    __slots__ = ("p", "__qualname__")
    index: int = 0
    part: str = "item"

    def __init__(self, p: Callable[[Any], bool]):
        self.p = p
        self.__qualname__ = f"{self.part}: {func_name(p)}"

    def __call__(self, pair: Any) -> bool:
        return self.p(pair[self.index])


class OnKey(OnItem):
    """``p(record[0])``: a predicate on the key of a pair."""

    __slots__ = ()
    index, part = 0, "key"


class OnValue(OnItem):
    """``p(record[1])``: a predicate on the value of a pair."""

    __slots__ = ()
    index, part = 1, "value"
