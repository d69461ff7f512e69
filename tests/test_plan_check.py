"""``LogicalPlan.check()`` catches a broken rewrite and names the rule; the optimizer warns when it
stops at its pass limit; the predicate analysis that lets key-only filters move is conservative."""

from __future__ import annotations

from operator import add

import pytest

from okplan.errors import InvalidPlanError, PlannerWarning
from okplan.logical import nodes as L
from okplan.logical.item_access import item_read
from okplan.logical.optimizer import MAX_PASSES, optimize
from okplan.logical.plan import LogicalPlan
from okplan.logical.rule import RuleLog


def test_check_accepts_every_plan_the_optimizer_makes(local_ctx):
    a = local_ctx.parallelize([(i % 5, i) for i in range(30)], 3).partitionBy(4)
    b = local_ctx.parallelize([(i % 7, i) for i in range(20)], 2).partitionBy(4)
    ds = a.union(b).filter(lambda kv: kv[1] > 2).reduceByKey(add).join(b).filter(lambda kv: kv[0] < 3)
    optimized, _ = optimize(LogicalPlan(ds._node), check=True)
    assert optimized.check() is optimized


def test_check_names_the_rule_that_broke_the_plan(local_ctx):
    ds = local_ctx.parallelize([(1, 2)], 2).reduceByKey(add, 3)

    def elide_wrongly(plan: LogicalPlan, log: RuleLog) -> LogicalPlan:
        def rewrite(node):
            if isinstance(node, L.Shuffle) and not node.elided:
                log.fired(node, "elided without looking")
                return node.replace(elided=True)
            return None
        return plan.transform(rewrite)

    with pytest.raises(InvalidPlanError, match=r"after rule elide_wrongly: #\d+ Shuffle: elided, but its input"):
        optimize(LogicalPlan(ds._node), (elide_wrongly,), check=True)


def test_check_rejects_a_union_that_claims_a_partitioner_its_inputs_lack(local_ctx):
    a = local_ctx.parallelize([(1, 2)], 2).partitionBy(3)
    bad = L.PartitionerAwareUnion(inputs=(a._node, local_ctx.parallelize([(1, 2)], 3)._node))
    with pytest.raises(InvalidPlanError, match="not partitioned alike"):
        LogicalPlan(bad).check()


def test_union_of_co_partitioned_inputs_stays_partitioned_through_pushdown(local_ctx):
    # regression: the union used to read its partitioner through a plain Union below it; a filter
    # pushed into that Union left "1 inputs partitioned alike" without a partitioner, and a partial
    # aggregate was lifted below a reduce that needed no shuffle at all
    a = local_ctx.parallelize([(i % 5, i) for i in range(30)], 3).partitionBy(4)
    b = local_ctx.parallelize([(i % 7, i) for i in range(20)], 2).partitionBy(4)
    ds = a.union(b).filter(lambda kv: kv[1] % 2 == 0).reduceByKey(add)
    optimized, fired = optimize(LogicalPlan(ds._node), check=True)
    assert not any(isinstance(n, L.PartialAggregate) for n in optimized.nodes())
    assert "lift_combiners" not in [f.rule for f in fired]
    union = next(n for n in optimized.nodes() if isinstance(n, L.PartitionerAwareUnion))
    assert len(union.inputs) == 2 and union.partitioner == a.partitioner
    with local_ctx.optimizing(False):
        expected = sorted(ds.collect())
    assert sorted(ds.collect()) == expected


def test_the_optimizer_warns_at_its_pass_limit(local_ctx):
    ds = local_ctx.parallelize([1, 2], 2).map(str)

    def flip(plan: LogicalPlan, log: RuleLog) -> LogicalPlan:
        # two rules undoing each other forever: a bug the pass limit must survive, loudly
        def rewrite(node):
            if isinstance(node, L.Narrow):
                log.fired(node, "flip")
                return node.replace(preserves_partitioning=not node.preserves_partitioning)
            return None
        return plan.transform(rewrite)

    with pytest.warns(PlannerWarning, match=f"stopped after {MAX_PASSES} passes.*flip"):
        _, fired = optimize(LogicalPlan(ds._node), (flip,))
    assert len(fired) == MAX_PASSES


def _nested(kv):
    return any(kv[0] == x for x in (1, 2))


def _stores(kv):
    kv = kv[1]
    return kv > 1


def _reassigned_key(kv):
    k = kv[0]
    return k in (1, 2, 3)


@pytest.mark.parametrize("fn, item", [
    (lambda kv: kv[0] < 8, 0),
    (lambda kv: kv[1] % 2 == 0 and kv[1] > 3, 1),
    (lambda kv, limit=8: kv[0] < limit, 0),
    (_reassigned_key, 0),
    (lambda kv: kv[0] < kv[1], None),          # both items
    (lambda kv: len(kv) > 1, None),            # the whole record
    (lambda kv: kv[-1] > 0, None),             # an index that is not 0 or 1
    (lambda kv: kv[0][1] > 0, 0),              # an item of the key is still the key
    (lambda kv: print(kv) or True, None),      # passed on
    (lambda kv: locals() and kv[0] > 1, None),  # reached by introspection
    (_nested, None),                           # captured by a generator expression
    (_stores, None),                           # the argument re-bound
    (str.isdigit, None),                       # not a Python function
    (lambda *kv: kv[0] > 0, None),
], ids=lambda v: repr(v) if not callable(v) else getattr(v, "__name__", "fn"))
def test_item_read_proves_only_simple_item_access(fn, item):
    assert item_read(fn) == item
