"""Spread over training seeds: a variant's mean and spread, and the difference of two variants' seed means.

The paired bootstrap over images (:mod:`segcore.metrics.stats`) says whether two trained models differ on
these images; it is silent about how much a second training of the same recipe would differ. These
functions answer that from several seeds of each variant.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def seed_spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """{"mean", "std" (sample standard deviation, None for one seed), "min", "max", "n"} of a variant's
    score over its seeds; every value None (n 0) without any."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else None,
            "min": float(values.min()), "max": float(values.max()), "n": int(len(values))}


def seed_difference(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95) -> dict[str, float | None]:
    """The difference of seed means, B − A, with Welch's t interval (unequal variances, as two variants'
    seeds need not vary alike).

    Returns:
        {"difference", "low", "high", "n_a", "n_b"}; low and high are None with fewer than two seeds on a
        side, where no spread is known. Both equal the difference when every seed scored alike.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not len(a) or not len(b):
        raise ValueError("each variant needs at least one seed")
    difference = float(b.mean() - a.mean())
    low = high = None
    if len(a) > 1 and len(b) > 1:
        if a.std() == 0 and b.std() == 0:
            low = high = difference
        else:
            interval = stats.ttest_ind(b, a, equal_var=False).confidence_interval(confidence)
            low, high = float(interval.low), float(interval.high)
    return {"difference": difference, "low": low, "high": high, "n_a": int(len(a)), "n_b": int(len(b))}
