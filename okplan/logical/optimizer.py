"""The optimizer: runs the rules of ``RULES`` over a logical plan until none fires (a fixpoint) and
records every firing, so ``explain()`` can say what was rewritten and why.

A rule is a module in ``okplan/logical/rules/`` with one entry function
``rule(plan: LogicalPlan, log: RuleLog) -> LogicalPlan`` that returns the same plan object when it
changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .nodes import Node
from .plan import LogicalPlan
from .rules import RULES

Rule = Callable[[LogicalPlan, "RuleLog"], LogicalPlan]

#: more passes than any real plan needs; a guard against two rules undoing each other forever
MAX_PASSES = 25


@dataclass(frozen=True)
class Firing:
    rule: str
    node: str
    note: str


@dataclass
class RuleLog:
    """What fired, in order. Rules call ``fired(node, note)`` for each rewrite they make."""

    rule: str = ""
    firings: list[Firing] = field(default_factory=list)

    def fired(self, node: Node, note: str) -> None:
        self.firings.append(Firing(self.rule, f"#{node.nid} {node.op_name}", note))


def optimize(plan: LogicalPlan, rules: tuple[Rule, ...] | None = None) -> tuple[LogicalPlan, list[Firing]]:
    """Apply ``rules`` (default ``RULES``) to a fixpoint; returns the new plan and the firings.

    >>> optimized, fired = optimize(LogicalPlan(ds._node))     # doctest: +SKIP
    >>> [f.rule for f in fired]                                # doctest: +SKIP
    ['lift_combiners']
    """
    rules = RULES if rules is None else rules
    log = RuleLog()
    for _ in range(MAX_PASSES):
        changed = False
        for rule in rules:
            log.rule = rule.__name__
            new = rule(plan, log)
            if new is not plan:
                plan, changed = new, True
        if not changed:
            break
    return plan, log.firings
