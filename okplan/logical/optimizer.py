"""The optimizer: runs the rules of ``RULES`` over a logical plan until none fires (a fixpoint) and
records every firing, so ``explain()`` can say what was rewritten and why.

A rule is a module in ``okplan/logical/rules/`` with one entry function
``rule(plan: LogicalPlan, log: RuleLog) -> LogicalPlan`` that returns the same plan object when it
changes nothing (the types are in ``rule.py``).
"""

from __future__ import annotations

import os
import warnings

from ..errors import InvalidPlanError, PlannerWarning
from .plan import LogicalPlan
from .rule import Firing, Rule, RuleLog
from .rules import RULES

__all__ = ["MAX_PASSES", "Firing", "Rule", "RuleLog", "checking_plans", "optimize"]

#: more passes than any real plan needs; a guard against two rules undoing each other forever
MAX_PASSES = 25


def checking_plans() -> bool:
    """True when every rule's result is validated (``OKPLAN_CHECK_PLANS=1``; the test suite sets it).

    >>> checking_plans()
    True
    """
    return os.environ.get("OKPLAN_CHECK_PLANS", "") not in ("", "0")


def optimize(plan: LogicalPlan, rules: tuple[Rule, ...] | None = None,
             check: bool | None = None) -> tuple[LogicalPlan, list[Firing]]:
    """Apply ``rules`` (default ``RULES``) to a fixpoint; returns the new plan and the firings.
    ``check`` (default: ``checking_plans()``) runs ``LogicalPlan.check()`` after every rule that
    changed the plan, so a broken rewrite is reported with the rule that made it.

    >>> optimized, fired = optimize(LogicalPlan(ctx.parallelize([("a", 1)]).reduceByKey(add)._node))
    >>> [f.rule for f in fired]
    ['lift_combiners']
    """
    rules = RULES if rules is None else rules
    check = checking_plans() if check is None else check
    log = RuleLog()
    if check:
        plan.check()
    start = 0
    for _ in range(MAX_PASSES):
        changed, start = False, len(log.firings)
        for rule in rules:
            log.rule = rule.__name__
            new = rule(plan, log)
            if new is not plan:
                plan, changed = new, True
                if check:
                    _check_after(plan, rule.__name__)
        if not changed:
            return plan, log.firings
    recent = sorted({f.rule for f in log.firings[start:]})
    warnings.warn(f"the optimizer stopped after {MAX_PASSES} passes without reaching a fixpoint (still "
                  f"firing: {', '.join(recent)}); the plan is correct but may be less optimized. "
                  f"Please report it with the plan (ds.explain('logical')).", PlannerWarning, stacklevel=2)
    return plan, log.firings


def _check_after(plan: LogicalPlan, rule: str) -> None:
    try:
        plan.check()
    except InvalidPlanError as exc:
        raise InvalidPlanError(f"after rule {rule}: {exc}") from None
