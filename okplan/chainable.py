"""``ChainableList``: the seed's eager list with chainable transformations."""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable


class ChainableList(list):
    """A ``list`` whose transformations return new ``ChainableList``\\ s, computed at once.

    >>> ChainableList([1, 2, 3]).map(lambda x: x * 2).filter(lambda x: x > 2)
    [4, 6]
    >>> ChainableList([("a", 1), ("a", 2)]).reduceByKey(lambda a, b: a + b)
    [('a', 3)]
    """

    def map(self, f: Callable[[Any], Any]) -> "ChainableList":
        return ChainableList(map(f, self))

    def flatMap(self, f: Callable[[Any], Iterable]) -> "ChainableList":
        return ChainableList(x for item in self for x in f(item))

    def filter(self, f: Callable[[Any], bool]) -> "ChainableList":
        return ChainableList(filter(f, self))

    def reduce(self, f: Callable[[Any, Any], Any], *initial: Any) -> Any:
        if not self and not initial:
            raise ValueError("reduce() of an empty ChainableList with no initial value")
        return functools.reduce(f, self, *initial)

    def reduceByKey(self, f: Callable[[Any, Any], Any]) -> "ChainableList":
        out: dict = {}
        for k, v in self:
            out[k] = f(out[k], v) if k in out else v
        return ChainableList(out.items())

    def groupByKey(self) -> "ChainableList":
        out: dict = {}
        for k, v in self:
            out.setdefault(k, []).append(v)
        return ChainableList(out.items())

    def mapValues(self, f: Callable[[Any], Any]) -> "ChainableList":
        return ChainableList((k, f(v)) for k, v in self)

    def flatMapValues(self, f: Callable[[Any], Iterable]) -> "ChainableList":
        """``(k, x)`` for every ``x`` in ``f(v)``.

        >>> ChainableList([("a", [1, 2])]).flatMapValues(lambda v: v)
        [('a', 1), ('a', 2)]
        """
        return ChainableList((k, x) for k, v in self for x in f(v))

    def keyBy(self, f: Callable[[Any], Any]) -> "ChainableList":
        """``(f(x), x)`` for every record.

        >>> ChainableList([1, 2]).keyBy(str)
        [('1', 1), ('2', 2)]
        """
        return ChainableList((f(x), x) for x in self)

    def groupBy(self, f: Callable[[Any], Any]) -> "ChainableList":
        """``(f(x), [records])`` per distinct ``f(x)``, in order of first appearance.

        >>> ChainableList([1, 2, 3]).groupBy(lambda x: x % 2)
        [(1, [1, 3]), (0, [2])]
        """
        return self.keyBy(f).groupByKey()

    def sortByKey(self, ascending: bool = True, keyfunc: Callable[[Any], Any] = lambda k: k) -> "ChainableList":
        """The pairs sorted by ``keyfunc(key)``.

        >>> ChainableList([(2, "b"), (1, "a")]).sortByKey()
        [(1, 'a'), (2, 'b')]
        """
        return ChainableList(sorted(self, key=lambda kv: keyfunc(kv[0]), reverse=not ascending))

    def countByKey(self) -> dict:
        """``{key: number of pairs with that key}``.

        >>> ChainableList([("a", 1), ("a", 2)]).countByKey()
        {'a': 2}
        """
        out: dict = {}
        for k, _ in self:
            out[k] = out.get(k, 0) + 1
        return out

    def countByValue(self) -> dict:
        """``{record: how often it occurs}``.

        >>> ChainableList([1, 1, 2]).countByValue()
        {1: 2, 2: 1}
        """
        out: dict = {}
        for x in self:
            out[x] = out.get(x, 0) + 1
        return out

    def union(self, other: Iterable) -> "ChainableList":
        """The records of both, ``self`` first.

        >>> ChainableList([1]).union([2])
        [1, 2]
        """
        return ChainableList([*self, *other])

    def collectAsMap(self) -> dict:
        """The pairs as a dict (a later pair wins).

        >>> ChainableList([("a", 1), ("a", 2)]).collectAsMap()
        {'a': 2}
        """
        return self.dict()

    def isEmpty(self) -> bool:
        """True when there are no records.

        >>> ChainableList().isEmpty()
        True
        """
        return not self

    def keys(self) -> "ChainableList":
        return ChainableList(k for k, _ in self)

    def values(self) -> "ChainableList":
        return ChainableList(v for _, v in self)

    def distinct(self) -> "ChainableList":
        return ChainableList(dict.fromkeys(self))

    def sortBy(self, key: Callable[[Any], Any], ascending: bool = True) -> "ChainableList":
        return ChainableList(sorted(self, key=key, reverse=not ascending))

    def head(self, n: int = 10) -> "ChainableList":
        return ChainableList(self[:n])

    def tail(self, n: int = 10) -> "ChainableList":
        return ChainableList(self[-n:] if n > 0 else [])

    def take(self, n: int) -> "ChainableList":
        return self.head(n)

    def dict(self, f: Callable[[Any], tuple] | None = None) -> dict:
        """A dict of the pairs (or of ``f(x)`` for each record).

        >>> ChainableList([("a", 1), ("b", 2)]).dict()
        {'a': 1, 'b': 2}
        """
        # iter(): dict() would take a list with a ``keys`` method for a mapping
        return dict(map(f, self) if f is not None else iter(self))

    def join(self, other: Iterable) -> "ChainableList":
        """Inner join of two lists of pairs: ``(k, (v, w))``."""
        right: dict = {}
        for k, w in other:
            right.setdefault(k, []).append(w)
        return ChainableList((k, (v, w)) for k, v in self for w in right.get(k, ()))

    def zip(self, other: Iterable) -> "ChainableList":
        return ChainableList(zip(self, other))

    def count(self, *value: Any) -> int:  # type: ignore[override]
        """Without an argument, the number of records (as on a DataSet); with one, list.count."""
        return super().count(*value) if value else len(self)

    def collect(self) -> list:
        return list(self)

    def first(self) -> Any:
        if not self:
            raise ValueError("ChainableList is empty")
        return self[0]

    def sum(self) -> Any:
        return sum(self)
