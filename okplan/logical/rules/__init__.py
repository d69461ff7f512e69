"""Optimizer rules, one per module, in the order the optimizer runs them each pass."""

from .lift_combiners import lift_combiners

RULES = (
    lift_combiners,
)

__all__ = ["RULES"]
