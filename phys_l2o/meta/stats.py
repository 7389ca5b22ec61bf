"""Statistics for comparisons of optimizers on the same test problems, over meta-seeds.

A learned optimizer's result is a matrix of final losses ``(seeds, problems)``: one row per
meta-training seed, every row on the same test problems (a baseline has one row). Its mean is
the mean over both. Its interval comes from a *hierarchical* (crossed) bootstrap that resamples
the seeds and the problems independently (``scipy.stats.bootstrap`` with one index sample per
factor), so seeds that disagree give a wide interval even when each seed's interval over
problems is narrow. A paired difference of two methods resamples the problems jointly (the
same problems for both) and each method's seeds on their own. Intervals are percentile
intervals (95%, 10,000 resamples, fixed seed): the final loss on random problems is
heavy-tailed, so a normal interval would mislead.

The bootstrap treats a few meta-seeds as if they were many, so a comparison is also made *at the
level of seeds* (``seed_comparison``): one value per meta-seed (its mean final loss, or its
score on a suite), a t-interval of the difference over seeds, how many of the seed pairs point
the same way ("k of n"), and a rank test over seeds. A direction is called only when the
t-interval excludes 0 and the rank test agrees (``rank_agrees``); one run on either side never
decides. Its interval is calibrated where the crossed bootstrap is not: with seeds that vary as
meta-trainings do, a nominal 95% bootstrap interval covers the truth about 76% of the time at 3
seeds and 92% at 10, the t-interval over seeds 95% at both (tested).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

#: resamples and seed of every interval.
RESAMPLES = 10_000
SEED = 0
#: how intervals are made, in words, for reports.
METHOD = ("95% percentile bootstrap (10,000 resamples) that resamples meta-seeds and test "
          "problems independently; a paired difference shares the resampled problems")


def as_matrix(values: np.ndarray) -> np.ndarray:
    """``values`` as a ``(seeds, problems)`` float64 matrix (a 1-d array is one seed)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[None]
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"expected final losses of shape (seeds, problems) or (problems,), got "
                         f"shape {values.shape}")
    return values


def _interval(matrices: list[np.ndarray], signs: list[float], level: float) -> tuple[float, float]:
    """Percentile interval of ``sum_k sign_k * mean(M_k)`` under a crossed bootstrap: every
    matrix's seeds resampled on their own, the problems (shared columns) resampled jointly."""
    problems = matrices[0].shape[1]
    point = float(sum(s * m.mean() for m, s in zip(matrices, signs)))
    if not all(np.all(np.isfinite(m)) for m in matrices):
        return point, point
    # one index sample per factor with at least two levels (scipy needs two observations)
    factors = [(k, m.shape[0]) for k, m in enumerate(matrices) if m.shape[0] > 1]
    if problems > 1:
        factors.append((None, problems))
    if not factors:
        return point, point

    def statistic(*indices: np.ndarray, axis: int = -1) -> np.ndarray:
        # each index sample is (n,) (the point estimate) or (batch, n) (resamples)
        batch = max([i.shape[0] for i in indices if i.ndim == 2], default=None)
        chosen = {k: np.atleast_2d(i).astype(np.intp) for (k, _), i in zip(factors, indices)}
        cols = chosen.get(None)
        total = 0.0
        for k, (m, s) in enumerate(zip(matrices, signs)):
            if cols is None:  # one problem
                per_seed = np.broadcast_to(m.mean(axis=1), (batch or 1, m.shape[0]))
            else:  # (seeds, batch, problems) -> (batch, seeds)
                per_seed = m[:, cols].mean(axis=-1).T
            rows = chosen.get(k)
            if rows is not None:
                per_seed = np.take_along_axis(per_seed, rows, axis=-1)
            total = total + s * per_seed.mean(axis=-1)
        return total if batch is not None else total[0]

    data = tuple(np.arange(n, dtype=np.float64) for _, n in factors)
    result = stats.bootstrap(data, statistic, n_resamples=RESAMPLES, confidence_level=level,
                             method="percentile", vectorized=True, paired=False,
                             batch=max(1, 2_000_000 // max(1, sum(m.size for m in matrices))),
                             rng=np.random.default_rng(SEED))
    lo, hi = result.confidence_interval
    return float(lo), float(hi)


def bootstrap_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Interval of the mean of ``values`` (``(problems,)`` or ``(seeds, problems)``)."""
    return _interval([as_matrix(values)], [1.0], level)


def summarize(final: np.ndarray) -> dict:
    """Mean over seeds and problems with its interval, the median over problems of the
    per-problem mean over seeds, the mean of each seed, and how many problem runs diverged."""
    final = as_matrix(final)
    lo, hi = bootstrap_ci(final)
    with np.errstate(invalid="ignore"):
        return {"mean": float(final.mean()), "ci95": [lo, hi],
                "median": float(np.median(final.mean(axis=0))),
                "seed_means": [float(v) for v in final.mean(axis=1)],
                "diverged": int((~np.isfinite(final)).sum())}


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict:
    """Mean of ``a`` minus mean of ``b`` on the same problems, with its interval (each method's
    seeds resampled on their own, the problems jointly)."""
    a, b = as_matrix(a), as_matrix(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a paired difference needs the same problems: {a.shape[1]} vs "
                         f"{b.shape[1]}")
    lo, hi = _interval([a, b], [1.0, -1.0], 0.95)
    return {"mean": float(a.mean() - b.mean()), "ci95": [lo, hi]}


def seed_comparison(a, b, level: float = 0.95) -> dict:
    """Method ``a`` against method ``b`` at the level of meta-seeds (lower is better).

    Args:
        a: one value per meta-seed of ``a`` (its mean final loss or suite score, say).
        b: the same for ``b``, or a number for a method without meta-seeds (a baseline).
        level: confidence level of the interval.

    Returns:
        ``difference`` (mean of ``a`` minus mean of ``b``); ``ci95``, its t-interval over
        seeds (Welch's; against a baseline, a one-sample interval of ``a - b``; ``None`` for
        one run); ``pairs`` and ``of``: of the ``len(a) * len(b)`` seed pairs, how many have
        ``a`` below ``b``; ``p``: the two-sided p-value of a rank test over seeds
        (Mann-Whitney U; Wilcoxon's signed-rank test of ``a - b`` against a baseline;
        ``None`` for one run); ``seeds``: the seed counts; ``verdict``: ``"better"`` (``a``
        lower) or ``"worse"`` when the interval excludes 0 and the rank test agrees
        (``rank_agrees``), ``"one run"`` when a side is a single meta-seed (one run never
        decides), else ``"undecided"``.

    Raises:
        ValueError: an empty side or a non-finite value.
    """
    baseline = np.ndim(b) == 0
    a, b = np.ravel(np.asarray(a, dtype=np.float64)), np.ravel(np.asarray(b, dtype=np.float64))
    for name, side in (("a", a), ("b", b)):
        if side.size == 0 or not np.all(np.isfinite(side)):
            raise ValueError(f"{name} must hold one finite value per seed, got {side.tolist()}")
    below = int((a[:, None] < b[None, :]).sum())
    above = int((a[:, None] > b[None, :]).sum())
    out = {"difference": float(a.mean() - b.mean()), "ci95": None, "pairs": below,
           "of": int(a.size * b.size), "p": None, "seeds": [int(a.size), int(b.size)]}
    if a.size == 1 or (b.size == 1 and not baseline):
        out["verdict"] = "one run"
        return out
    if baseline:
        differences = a - b
        test = stats.ttest_1samp(differences, 0.0)
        out["p"] = float(stats.wilcoxon(differences).pvalue) if np.any(differences) else 1.0
    else:
        test = stats.ttest_ind(a, b, equal_var=False)
        out["p"] = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    lo, hi = test.confidence_interval(confidence_level=level)
    if not (np.isfinite(lo) and np.isfinite(hi)):  # no spread over seeds: a point
        lo = hi = out["difference"]
    out["ci95"] = [float(lo), float(hi)]
    smallest = smallest_p(int(a.size), None if baseline else int(b.size))
    if hi < 0 and rank_agrees(out["p"], below, out["of"], smallest, level):
        out["verdict"] = "better"
    elif lo > 0 and rank_agrees(out["p"], above, out["of"], smallest, level):
        out["verdict"] = "worse"
    else:
        out["verdict"] = "undecided"
    return out


def smallest_p(n_a: int, n_b: int | None) -> float:
    """The smallest two-sided p-value the exact rank test can give: Mann-Whitney's U for
    ``n_a`` against ``n_b`` seeds (``2 / C(n_a + n_b, n_a)``), Wilcoxon's signed-rank test
    of ``n_a`` differences against a baseline when ``n_b`` is ``None`` (``2 / 2**n_a``)."""
    if n_b is None:
        return min(1.0, 2.0 / 2.0 ** n_a)
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def rank_agrees(p: float, agreeing: int, pairs: int, smallest: float, level: float) -> bool:
    """The rank test agrees with a direction: its p-value is below ``1 - level`` with
    ``agreeing`` of the ``pairs`` seed pairs on that side (most of them), or, where so few
    seeds cannot reach that p-value (3 against 3 seeds: at best 0.1), every seed pair points
    that way."""
    if smallest >= 1.0 - level:
        return agreeing == pairs
    return p < 1.0 - level and 2 * agreeing > pairs


def finite_or_none(x: float) -> float | None:
    """JSON has no infinities: non-finite numbers become ``null``."""
    return x if math.isfinite(x) else None


def compare(a, b) -> dict:
    """Method ``a`` against method ``b`` on the same test problems (lower is better), at both
    levels. Each is a matrix of final losses ``(seeds, problems)``, or ``(problems,)`` for a
    method without meta-seeds (a baseline).

    Returns:
        ``boot`` (``paired_difference``), ``seeds`` (``seed_comparison`` of the per-seed means,
        mirrored where ``a`` is the baseline) and ``direction``: ``"lower"`` or ``"higher"``
        where both levels agree, ``"one run"`` where a learned side has a single meta-seed,
        else ``None``.
    """
    boot = paired_difference(a, b)
    first, second = (np.asarray(m, dtype=np.float64).mean(axis=-1) for m in (a, b))
    if np.ndim(first) == 0 and np.ndim(second) > 0:  # a baseline against seeds: mirrored
        level = seed_comparison(second, first)
        lo, hi = level["ci95"] or (None, None)
        level.update(difference=-level["difference"],
                     ci95=None if lo is None else [-hi, -lo],
                     pairs=int((first < second).sum()),
                     verdict={"better": "worse", "worse": "better"}.get(level["verdict"],
                                                                        level["verdict"]))
    else:
        level = seed_comparison(first, second)
    lo, hi = boot["ci95"]
    if level["verdict"] == "one run":
        direction = "one run"
    elif hi < 0 and level["verdict"] == "better":
        direction = "lower"
    elif lo > 0 and level["verdict"] == "worse":
        direction = "higher"
    else:
        direction = None
    return {"boot": boot, "seeds": level, "direction": direction}


def _fmt(interval) -> str:
    return f"[{interval[0]:+.3g}, {interval[1]:+.3g}]"


def evidence(a: str, b: str, c: dict) -> str:
    """One ``compare`` result in words: the difference with its bootstrap interval, then the
    seed level (its t-interval, "k of n" seed pairs, the rank test) or "one run"."""
    boot, level = c["boot"], c["seeds"]
    text = f"{a} - {b} {boot['mean']:+.3g} {_fmt(boot['ci95'])}"
    if level["verdict"] == "one run":
        return text + " (one run: a single meta-seed never decides)"
    n = level["seeds"][0]
    test = "Wilcoxon" if level["of"] == n else "Mann-Whitney"
    return (text + f"; over seeds {_fmt(level['ci95'])}, {a} lower in {level['pairs']} of "
            f"{level['of']}{' seeds' if level['of'] == n else ' seed pairs'}, {test} p = "
            f"{level['p']:.2g}")
