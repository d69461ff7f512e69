"""Executable rule documentation: every case of ``tests/fixtures/rules/<rule>.txt`` builds its plan,
checks the plan before against the fixture, runs that one rule to a fixpoint (validating the plan after
each rewrite) and compares the result through the plan renderer. A changed plan is a visible diff."""

from __future__ import annotations

import os
import re

import pytest

from okplan.logical import rules
from okplan.logical.optimizer import optimize
from okplan.logical.plan import LogicalPlan
from okplan.logical.render import render_tree
from rule_fixtures import FIXTURES, NAMES, Case, read_cases, write_cases

RULE_NAMES = [rule.__name__ for rule in rules.RULES]
UPDATE = os.environ.get("OKPLAN_UPDATE_FIXTURES") == "1"


def _render(plan: LogicalPlan) -> str:
    # job-scoped cache ids count up with every plan ever built
    return re.sub(r"job-\d+", "job-N", render_tree(plan.root, bare=True))


def _run(ctx, rule, case: Case) -> Case:
    ds = eval(case.expression, dict(NAMES, ctx=ctx))  # noqa: S307 (our own fixture files)
    before = LogicalPlan(ds._node)
    after, _ = optimize(before, (rule,), check=True)
    return Case(case.title, case.expression, _render(before), _render(after))


def test_every_rule_has_fixtures():
    assert sorted(p.stem for p in FIXTURES.glob("*.txt")) == sorted(RULE_NAMES)


@pytest.mark.parametrize("rule_name", RULE_NAMES)
def test_rule_fixtures(local_ctx, rule_name):
    path = FIXTURES / f"{rule_name}.txt"
    cases = read_cases(path)
    assert cases, f"{path} has no cases"
    got = [_run(local_ctx, getattr(rules, rule_name), case) for case in cases]
    if UPDATE:
        write_cases(path, got)
        return
    for want, have in zip(cases, got):
        assert (want.title, have.before) == (want.title, want.before)
        assert (want.title, have.after) == (want.title, want.after)
