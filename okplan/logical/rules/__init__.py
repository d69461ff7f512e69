"""Optimizer rules, one per module, in the order the optimizer runs them each pass.

Order matters only for how direct the result is, not for correctness: dead inputs go first,
identical work is merged before filters move (so a shared filter moves once), shuffles are elided
before combiners are lifted (an elided shuffle needs no partial aggregate), joins pick their
strategy once elision has looked at the cogroup, and shared work is
materialised last, once the plan's shape has settled.
"""

from .cull_empty import cull_empty
from .elide_shuffles import elide_shuffles
from .hash_join import hash_join
from .lift_combiners import lift_combiners
from .materialize_shared import materialize_shared
from .merge_identical_subplans import merge_identical_subplans
from .push_filters import push_filters

RULES = (
    cull_empty,
    merge_identical_subplans,
    push_filters,
    elide_shuffles,
    hash_join,
    lift_combiners,
    materialize_shared,
)

__all__ = ["RULES", "cull_empty", "elide_shuffles", "hash_join", "lift_combiners", "materialize_shared",
           "merge_identical_subplans", "push_filters"]
