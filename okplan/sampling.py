"""Sampling methods that need more than one pass or more than one output (``takeSample``,
``randomSplit``, ``sampleByKey``). Mixed into ``DataSet``.

``randomSplit`` and ``sampleByKey`` draw their numbers exactly as PySpark's ``RDDRangeSampler`` and
``RDDStratifiedSampler`` do (one generator per partition, seeded ``seed ^ partition``), so the same seed
over the same partitions picks the same records as PySpark.
"""

from __future__ import annotations

import math
import random
import sys
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

from . import _checks as chk
from .logical.narrow import not_a_pair, raised_here

if TYPE_CHECKING:
    from .dataset import DataSet

#: PySpark's bound on takeSample's size (a sample must fit in a list)
_MAX_SAMPLE = sys.maxsize - int(10.0 * math.sqrt(sys.maxsize))


def _partition_random(seed: int, split: int) -> random.Random:
    """PySpark's per-partition generator: ``Random(seed ^ split)`` warmed up by ten draws, because
    neighbouring seeds start out alike."""
    rng = random.Random(seed ^ split)
    for _ in range(10):
        rng.randint(0, 1)
    return rng


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson(``mean``) draw the way PySpark's samplers make it."""
    if mean < 20.0:
        limit = math.exp(-mean)
        p, k = rng.random(), 0
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    # the log domain: k + 1 exponential draws
    k, p = 0, rng.expovariate(mean)
    while p < 1.0:
        k += 1
        p += rng.expovariate(mean)
    return k


class RangeSampler:
    """Keeps the records whose uniform draw falls in ``[lower, upper)``: complementary ranges of one
    seed split a partition without overlap."""

    def __init__(self, lower: float, upper: float, seed: int):
        self.lower, self.upper, self.seed = lower, upper, seed

    def __repr__(self) -> str:
        return f"[{self.lower:.3g}, {self.upper:.3g}) seed={self.seed}"

    def __call__(self, split: int, it: Iterable) -> Iterator:
        rng = _partition_random(self.seed, split)
        lower, upper, draw = self.lower, self.upper, rng.random
        for x in it:
            if lower <= draw() < upper:
                yield x


class StratifiedSampler:
    """Per-key Bernoulli (or Poisson, with replacement) sampling at ``fractions[key]``."""

    def __init__(self, with_replacement: bool, fractions: dict, seed: int):
        self.with_replacement, self.fractions, self.seed = with_replacement, fractions, seed

    def __repr__(self) -> str:
        return f"{len(self.fractions)} keys, seed={self.seed}"

    def __call__(self, split: int, it: Iterable) -> Iterator:
        rng = _partition_random(self.seed, split)
        fractions = self.fractions
        try:
            if self.with_replacement:
                for key, value in it:
                    for _ in range(_poisson(rng, fractions[key])):
                        yield key, value
            else:
                for key, value in it:
                    if rng.random() < fractions[key]:
                        yield key, value
        except (TypeError, ValueError) as e:
            if raised_here(e, StratifiedSampler.__call__):
                raise not_a_pair("sampleByKey", e) from None
            raise


def _fraction_for_sample_size(num: int, total: int, with_replacement: bool) -> float:
    """A sampling rate that yields at least ``num`` of ``total`` records 99.99% of the time (Spark's
    ``SamplingUtils.computeFractionForSampleSize``)."""
    fraction = float(num) / total
    if with_replacement:
        stdevs = 9 if num < 12 else 5
        return fraction + stdevs * math.sqrt(fraction / total)
    gamma = -math.log(0.00005) / total
    return min(1.0, fraction + gamma + math.sqrt(gamma * gamma + 2 * gamma * fraction))


class SamplingMixin:
    def takeSample(self, withReplacement: bool, num: int, seed: int | None = None) -> list:
        """Exactly ``num`` random records (fewer only when sampling without replacement from fewer),
        in random order. As PySpark: counts, samples at a rate that is big enough 99.99% of the time,
        and samples again in the rare case it was not.

        >>> len(ctx.parallelize(range(10)).takeSample(True, 20, 1))
        20
        """
        chk.check_int(num, "takeSample", "num")
        if num < 0:
            raise ValueError("Sample size cannot be negative.")
        if num > _MAX_SAMPLE:
            raise ValueError("Sample size cannot be greater than %d." % _MAX_SAMPLE)
        if num == 0 or self.getNumPartitions() == 0:  # type: ignore[attr-defined]
            return []
        total = self.count()  # type: ignore[attr-defined]
        if total == 0:
            return []
        rand = random.Random(seed)
        if not withReplacement and num >= total:
            everything = self.collect()  # type: ignore[attr-defined]
            rand.shuffle(everything)
            return everything
        fraction = _fraction_for_sample_size(num, total, bool(withReplacement))
        sample_seed = seed if seed is not None else rand.randint(0, sys.maxsize)
        samples = self.sample(withReplacement, fraction, sample_seed).collect()  # type: ignore[attr-defined]
        while len(samples) < num:
            # rare by construction; a new seed each time, as PySpark
            samples = self.sample(withReplacement, fraction,  # type: ignore[attr-defined]
                                  rand.randint(0, sys.maxsize)).collect()
        rand.shuffle(samples)
        return samples[:num]

    def randomSplit(self, weights: Sequence[int | float], seed: int | None = None) -> "list[DataSet]":
        """Split into datasets of about ``weights`` shares (normalised); every record lands in exactly
        one of them as long as the input's partitions hold the same records in the same order each
        time they are computed (``cache()`` it otherwise).

        >>> a, b = ctx.parallelize(range(500), 1).randomSplit([2, 3], 17)
        >>> a.count() + b.count()
        500
        """
        weights = list(weights)
        if not all(w >= 0 for w in weights):
            raise ValueError("Weights must be nonnegative")
        total = float(sum(weights))
        if not total > 0:
            raise ValueError("Sum of weights must be positive")
        bounds = [0.0]
        for w in weights:
            bounds.append(bounds[-1] + w / total)
        if seed is None:
            seed = random.randint(0, 2**32 - 1)
        samplers = [RangeSampler(lo, hi, int(seed)) for lo, hi in zip(bounds, bounds[1:])]
        return [self._narrow("randomSplit", s, s, True) for s in samplers]  # type: ignore[attr-defined]

    def sampleByKey(self, withReplacement: bool, fractions: dict, seed: int | None = None) -> "DataSet":
        """A sample of ``(k, v)`` pairs with a rate per key (``fractions[k]``; every key must have one).

        >>> ctx.parallelize([("a", 1), ("b", 2)]).sampleByKey(False, {"a": 1.0, "b": 0.0}).collect()
        [('a', 1)]
        """
        if not isinstance(fractions, dict):
            raise TypeError(f"sampleByKey() expects a dict of key -> fraction, got {type(fractions).__name__}")
        for fraction in fractions.values():
            if not fraction >= 0.0:
                raise ValueError("Negative fraction value: %s" % fraction)
        if seed is None:
            seed = random.randint(0, sys.maxsize)
        sampler = StratifiedSampler(bool(withReplacement), dict(fractions), int(seed))
        return self._narrow("sampleByKey", sampler, sampler, True)  # type: ignore[attr-defined]


__all__ = ["SamplingMixin", "RangeSampler", "StratifiedSampler"]
