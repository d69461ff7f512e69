"""What a rule is and how it reports: the types the optimizer and every rule module share.

A rule is a function ``rule(plan, log) -> plan`` that returns the same plan object when it changes
nothing, and calls ``log.fired(node, note)`` for every rewrite it makes. This module imports no rule
and not the optimizer, so rules depend on it and the optimizer depends on the rules, never in a circle.

>>> log = RuleLog("demo")
>>> log.fired(Union(inputs=()), "nothing to do")
>>> log.firings[0].rule, log.firings[0].note
('demo', 'nothing to do')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .nodes import Node, Union  # noqa: F401  (Union: the doctest above)

if TYPE_CHECKING:
    from .plan import LogicalPlan


@dataclass(frozen=True)
class Firing:
    """One rewrite: the rule, the node it rewrote (``#id Op``) and why."""

    rule: str
    node: str
    note: str


@dataclass
class RuleLog:
    """What fired, in order. Rules call ``fired(node, note)`` for each rewrite they make; the optimizer
    sets ``rule`` to the name of the rule it is about to run."""

    rule: str = ""
    firings: list[Firing] = field(default_factory=list)

    def fired(self, node: Node, note: str) -> None:
        self.firings.append(Firing(self.rule, f"#{node.nid} {node.op_name}", note))


Rule = Callable[["LogicalPlan", RuleLog], "LogicalPlan"]
