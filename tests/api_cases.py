"""Tables of small programs with the result PySpark gives for them.

Each ``test_api_*.py`` module keeps a ``CASES`` dict ``{id: (program, expected)}``; ``program(sc)`` takes
either an okplan ``Context`` or a ``pyspark.SparkContext`` and uses only the API both share, so the
same table runs on okplan (every executor, through the ``ctx`` fixture) and, in
``test_pyspark_differential.py``, on a real PySpark, which checks that ``expected`` is what PySpark gives.

Programs normalise what PySpark and okplan represent differently on purpose (``groupByKey`` values:
``mapValues(list)``) and sort the output of shuffles, whose order no API defines.
``Raises(SomeError)`` as the expected value means the program must raise that type.
Ids listed in a module's ``OKPLAN_ONLY`` set document a deliberate difference from PySpark and are
skipped by the differential test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pytest

Program = Callable[[Any], Any]


@dataclass(frozen=True)
class Raises:
    """Expected value of a program that must raise ``error`` (a subclass is fine)."""

    error: type[BaseException]


def outcome(program: Program, sc: Any) -> Any:
    """``program(sc)``, or ``Raises(type)`` of the exception it raised when that is expected."""
    try:
        return program(sc)
    except Exception as exc:  # noqa: BLE001 - the type is the result
        return Raises(type(exc))


def matches(got: Any, expected: Any) -> bool:
    if isinstance(expected, Raises):
        return isinstance(got, Raises) and issubclass(got.error, expected.error)
    return got == expected


def check(cases: dict[str, tuple[Program, Any]], name: str, sc: Any) -> None:
    """Run case ``name`` on ``sc`` and compare with its expected value."""
    program, expected = cases[name]
    if isinstance(expected, Raises):
        with pytest.raises(expected.error):
            program(sc)
    else:
        assert program(sc) == expected


def by_key(records: Any) -> list:
    """Sorted by ``repr``: an order for shuffle output that mixes types or holds None."""
    return sorted(records, key=repr)
