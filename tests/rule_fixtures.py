"""Reading and writing the rule fixtures of ``tests/fixtures/rules/<rule>.txt``.

Each case documents one rewrite (or one place a rule must not fire) as sqlglot's optimizer fixtures
do: a title line ``# ...``, a DataSet expression, the plan before (``--- before``) and the plan after
that rule alone ran to a fixpoint (``--- after``), both as ``render_tree(..., bare=True)`` prints
them. ``OKPLAN_UPDATE_FIXTURES=1 python -m pytest tests/test_rule_fixtures.py`` rewrites the expected
plans from what the rules do now (read the diff before committing it).
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import add
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "rules"


@dataclass
class Case:
    title: str
    expression: str
    before: str
    after: str


def read_cases(path: Path) -> list[Case]:
    cases: list[Case] = []
    for chunk in ("\n" + path.read_text()).split("\n# ")[1:]:
        title, rest = chunk.split("\n", 1)
        expression, rest = rest.split("--- before\n", 1)
        before, after = rest.split("--- after\n", 1)
        cases.append(Case(title.strip(), expression.strip(), before.strip("\n"), after.strip("\n")))
    return cases


def write_cases(path: Path, cases: list[Case]) -> None:
    path.write_text("\n\n".join(f"# {c.title}\n{c.expression}\n--- before\n{c.before}\n--- after\n{c.after}"
                                for c in cases) + "\n")


# -- the names fixture expressions use (named functions: plans show their names) --------------------

def pairs(ctx, n: int = 40, parts: int = 4):
    """``n`` pairs ``(i % 10, i)`` in ``parts`` partitions."""
    return ctx.parallelize([(i % 10, i) for i in range(n)], parts)


def nums(ctx, n: int = 20, parts: int = 2):
    return ctx.parallelize(range(n), parts)


def small_key(kv):
    return kv[0] < 8


def positive_value(kv):
    return kv[1] > 0


def odd(x):
    return x % 2 == 1


def double(v):
    return v * 2


def tenth(x):
    return x // 10


def first_digit(k):
    return k % 7


NAMES = {"pairs": pairs, "nums": nums, "small_key": small_key, "positive_value": positive_value, "odd": odd,
         "double": double, "tenth": tenth, "first_digit": first_digit, "add": add}
