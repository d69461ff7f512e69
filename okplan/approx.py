"""Approximate actions: ``countApproxDistinct`` (a HyperLogLog sketch per partition, merged here) and
PySpark's ``countApprox``/``sumApprox``/``meanApprox``, which okplan answers exactly (it has no
partial results to stop early with). Mixed into ``DataSet``.

The sketch is Apache DataSketches' HLL (``pip install 'okplan[sketch]'``): a well-kept C++ library
with mergeable, serialisable sketches, the same family as Spark's HyperLogLog++.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from .errors import ConfigurationError
from .logical.partitioners import portable_hash

#: DataSketches' bounds on log2(registers)
_MIN_LG_K, _MAX_LG_K = 4, 21


class BoundedFloat(float):
    """A float with the confidence and bounds of an approximation (PySpark's ``BoundedFloat``);
    okplan's answers are exact, so ``low == high == value`` and ``confidence`` is what was asked."""

    confidence: float
    low: float
    high: float

    def __new__(cls, mean: float, confidence: float, low: float, high: float) -> "BoundedFloat":
        obj = super().__new__(cls, mean)
        obj.confidence, obj.low, obj.high = confidence, low, high
        return obj


def _datasketches() -> Any:
    try:
        import datasketches
    except ImportError:
        raise ConfigurationError("countApproxDistinct() needs the datasketches package: "
                                 "pip install 'okplan[sketch]'") from None
    return datasketches


def lg_k_for(relative_sd: float) -> int:
    """Spark's register count for ``relativeSD`` (``p = ceil(2 log2(1.106 / relativeSD))``), within
    what DataSketches supports (2^4 .. 2^21 registers: a relative error of ~0.07% at best)."""
    p = math.ceil(2.0 * math.log2(1.106 / relative_sd))
    return max(_MIN_LG_K, min(_MAX_LG_K, p))


def sketch_partition(lg_k: int):
    """The per-partition function: the partition's records into a serialised HLL sketch. Strings and
    bytes are hashed by the sketch; anything else by ``portable_hash``, so records that are equal
    (``1``, ``1.0``, ``True``) count once, as in ``distinct``."""

    def sketch(it: Iterable) -> bytes:
        s = _datasketches().hll_sketch(lg_k)
        update = s.update
        for x in it:
            if type(x) is str:
                update(x)
            else:
                update(portable_hash(x))
        return s.serialize_compact()

    return sketch


def merge_sketches(blobs: Iterable[bytes], lg_k: int) -> int:
    ds = _datasketches()
    union = ds.hll_union(lg_k)
    for b in blobs:
        union.update(ds.hll_sketch.deserialize(b))
    return int(round(union.get_estimate()))


class ApproxMixin:
    def countApproxDistinct(self, relativeSD: float = 0.05) -> int:
        """About how many distinct records there are, within ``relativeSD`` relative error (one
        standard deviation), from a HyperLogLog sketch per partition: no shuffle, little memory.

        >>> 900 < ctx.parallelize(range(1000)).map(str).countApproxDistinct() < 1100
        True
        """
        if not isinstance(relativeSD, (int, float)) or isinstance(relativeSD, bool):
            raise TypeError(f"countApproxDistinct() expects a number for relativeSD, got {type(relativeSD).__name__}")
        if relativeSD < 0.000017:
            raise ValueError("relativeSD should be greater than 0.000017")
        _datasketches()  # fail here, not in every task, when it is missing
        lg_k = lg_k_for(relativeSD)
        return merge_sketches(self._run(sketch_partition(lg_k), "countApproxDistinct"), lg_k)  # type: ignore

    def countApprox(self, timeout: int, confidence: float = 0.95) -> int:
        """PySpark's count within a timeout; okplan counts exactly (``timeout`` is not used).

        >>> ctx.parallelize(range(1000), 10).countApprox(1000, 1.0)
        1000
        """
        _check_confidence(confidence, "countApprox")
        return int(self.count())  # type: ignore[attr-defined]

    def sumApprox(self, timeout: int, confidence: float = 0.95) -> BoundedFloat:
        """PySpark's sum within a timeout; okplan sums exactly (``timeout`` is not used).

        >>> ctx.parallelize(range(1000), 10).sumApprox(1000)
        499500.0
        """
        _check_confidence(confidence, "sumApprox")
        total = float(self.map(float).sum())  # type: ignore[attr-defined]
        return BoundedFloat(total, confidence, total, total)

    def meanApprox(self, timeout: int, confidence: float = 0.95) -> BoundedFloat:
        """PySpark's mean within a timeout; okplan computes it exactly (``timeout`` is not used).

        >>> ctx.parallelize(range(1000), 10).meanApprox(1000)
        499.5
        """
        _check_confidence(confidence, "meanApprox")
        mean = float(self.map(float).mean())  # type: ignore[attr-defined]
        return BoundedFloat(mean, confidence, mean, mean)


def _check_confidence(confidence: float, method: str) -> None:
    if not isinstance(confidence, (int, float)) or not 0.0 <= confidence <= 1.0:
        raise ValueError(f"{method}() needs 0 <= confidence <= 1, got {confidence!r}")


__all__ = ["ApproxMixin", "BoundedFloat"]
