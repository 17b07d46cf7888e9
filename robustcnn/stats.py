"""Small statistics used by every check: Wilson intervals and bootstrap-free summaries."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import binom


def wilson_interval(successes: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval for a binomial proportion (Wilson 1927); (nan, nan) when n == 0."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


def quantile_with_ci(values: np.ndarray, q: float, level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """Sample quantile (inverted CDF) and its distribution-free order-statistic interval.

    The interval [x_(l), x_(u)] uses the binomial(n, q) quantiles of how many samples fall
    below the true quantile; values may be +inf (no adversarial found), which stays inf.
    """
    v = np.sort(np.asarray(values, dtype=float))
    n = len(v)
    if n == 0:
        return math.nan, (math.nan, math.nan)
    point = v[min(n - 1, max(0, math.ceil(q * n) - 1))]
    alpha = (1 - level) / 2
    lo = max(1, int(binom.ppf(alpha, n, q)))
    hi = min(n, int(binom.ppf(1 - alpha, n, q)) + 1)
    return float(point), (float(v[lo - 1]), float(v[hi - 1]))
