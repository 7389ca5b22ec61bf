"""Statistics for paired comparisons of optimizers on the same test problems.

Confidence intervals are percentile bootstrap intervals of the mean (10,000 resamples of the
problems, fixed seed): the final loss on random problems is heavy-tailed, so a normal
interval would be misleading. A paired difference resamples the problems jointly.
"""

from __future__ import annotations

import math

import numpy as np


def bootstrap_ci(values: np.ndarray, level: float = 0.95, resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("bootstrap_ci needs a non-empty 1-d array")
    if values.size == 1 or not np.all(np.isfinite(values)):
        m = float(values.mean())
        return m, m
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def summarize(final: np.ndarray) -> dict:
    """Mean, 95% bootstrap CI, median, and how many problems diverged (non-finite loss)."""
    final = np.asarray(final, dtype=np.float64)
    lo, hi = bootstrap_ci(final)
    return {"mean": float(final.mean()), "ci95": [lo, hi], "median": float(np.median(final)),
            "diverged": int((~np.isfinite(final)).sum())}


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict:
    """Mean of ``a - b`` over the same problems, with its 95% bootstrap CI."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    lo, hi = bootstrap_ci(diff)
    return {"mean": float(diff.mean()), "ci95": [lo, hi]}


def finite_or_none(x: float) -> float | None:
    """JSON has no infinities: non-finite numbers become ``null``."""
    return x if math.isfinite(x) else None
