"""Predicates the optimizer derives when it moves a filter below an operator that changes the record
shape: ``filter(p)`` over ``values()`` is ``filter(OnValue(p))`` below it, and a key-only ``p`` over
``distinct``'s ``(x, None)`` pairs is ``p((x,))`` on the records below.

>>> OnKey(str.isdigit)(("7", "x"))
True
>>> reads_item(OnValue(bool)), reads_item(lambda kv: kv[0] > 2), reads_item(bool)
(1, 0, None)
>>> item_predicate(lambda kv: kv[0] > 2, 0)(5)
True
"""

from __future__ import annotations

from typing import Any, Callable

from .item_access import item_read
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


ON_ITEM: dict[int, type[OnItem]] = {0: OnKey, 1: OnValue}


class AsItem:
    """``p`` of a pair holding the record at ``index``, for a ``p`` that reads only that item: the
    predicate on what a ``pairWithNone`` (index 0) or ``keyBy`` (index 1) wraps."""

    __slots__ = ("p", "index", "__qualname__")

    def __init__(self, p: Callable[[Any], bool], index: int):
        self.p, self.index = p, index
        self.__qualname__ = f"{func_name(p)} on {'key' if index == 0 else 'value'}"

    def __call__(self, x: Any) -> bool:
        # p reads only item ``index``, so the other item may be anything
        return self.p((x,) if self.index == 0 else (None, x))


def reads_item(p: Any) -> int | None:
    """The one item (0: key, 1: value) of a pair the predicate reads, when that is known, else None."""
    if isinstance(p, OnItem):
        return p.index
    return item_read(p)


def item_predicate(p: Any, index: int) -> Callable[[Any], bool]:
    """The predicate on item ``index`` alone, for a ``p`` with ``reads_item(p) == index``."""
    if isinstance(p, OnItem):
        return p.p
    return AsItem(p, index)
