"""Scores of a held-out benchmark: per-task normalization by tuned Adam, the interquartile mean
over tasks and stratified bootstrap intervals, as rliable computes them (Agarwal et al., 2021),
with numpy and scipy. Lower is better everywhere.

Every method runs each task on the same evaluation seeds (the same problems for every method of
a task). The rules, in order:

1. *Divergence.* A run that diverged (a non-finite loss anywhere along it or at its end) is
   scored at ``max(initial, worst)``: its initial training loss or the largest finite loss it
   reached, whichever is larger, i.e. at least as bad as no progress. It is never dropped. A
   run that did not diverge keeps its final training loss.
2. *Normalization.* A run's score is ``log(loss) - mean(log(reference))``: the natural log of
   its loss minus the mean log loss of tuned Adam over the task's seeds. 0 is as good as tuned
   Adam, -1 a loss e times smaller. A loss of exactly 0 is raised to ``FLOOR`` (1e-12) first.
3. *Aggregation.* A method's scores form a ``(seeds, tasks)`` matrix. Its aggregate is the
   interquartile mean (IQM) of all runs: the mean of the middle 50% of the values (25% trimmed
   from each end), robust to a few outlying tasks or seeds and less noisy than the median.
4. *Intervals.* 95% percentile intervals from a stratified bootstrap (2,000 resamples, fixed
   seed): each resample draws, independently per task, as many seeds as there are, with
   replacement. Tasks are never resampled: the suite is fixed, its seeds are the sample. A
   paired difference of two methods draws the same seeds for both (the same problems).
5. *Counts.* A method wins a task when its mean score over the seeds is below 0 (minus a
   margin); its performance profile at ``tau`` is the fraction of all runs scored ``<= tau``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

#: resamples and seed of every interval.
RESAMPLES = 2000
SEED = 0
#: the smallest loss a log is taken of (a loss of exactly 0 is raised to it).
FLOOR = 1e-12
#: how scores and intervals are made, in words, for reports.
METHOD = ("interquartile mean of per-run scores (log loss minus tuned Adam's mean log loss on "
          "the task; a diverged run scored at its initial or worst loss) with a 95% percentile "
          "stratified bootstrap interval (2,000 resamples of the seeds within each task; a "
          "paired difference shares the resampled seeds)")

#: values gathered per chunk of resamples (bounds the memory of a bootstrap).
_CHUNK = 2_000_000


def _runs(values, name: str) -> np.ndarray:
    """``values`` as a non-empty float64 array."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError(f"{name} is empty")
    return values


def _matrix(scores, name: str = "scores") -> np.ndarray:
    """``scores`` as a finite, non-empty ``(seeds, tasks)`` float64 matrix."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f"{name} must be a non-empty (seeds, tasks) matrix, got shape "
                         f"{scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{name} has non-finite values (score diverged runs with scored_loss)")
    return scores


def scored_loss(final, initial, worst, diverged) -> np.ndarray:
    """The loss each run is scored at.

    Args:
        final: final training loss per run (non-finite if it diverged).
        initial: training loss at the start of each run.
        worst: largest finite training loss along each run (NaN where there was none).
        diverged: whether each run saw a non-finite loss; a non-finite ``final`` counts as
            diverged whatever the flag says.

    Returns:
        ``final`` where the run did not diverge, else ``max(initial, worst)``; one value per
        run (a diverged run is never dropped).

    Raises:
        ValueError: if the shapes differ or a diverged run has neither a finite initial nor a
            finite worst loss.
    """
    final, initial, worst = (np.asarray(v, dtype=np.float64) for v in (final, initial, worst))
    diverged = np.asarray(diverged, dtype=bool)
    shapes = {final.shape, initial.shape, worst.shape, diverged.shape}
    if len(shapes) != 1:
        raise ValueError(f"final, initial, worst and diverged must have the same shape, got "
                         f"{final.shape}, {initial.shape}, {worst.shape} and {diverged.shape}")
    diverged = diverged | ~np.isfinite(final)
    with np.errstate(invalid="ignore"):
        fallback = np.fmax(initial, worst)  # a NaN (no finite loss seen) is ignored
    if not np.all(np.isfinite(fallback[diverged])):
        raise ValueError("a diverged run needs a finite initial or worst loss to be scored")
    return np.where(diverged, fallback, final)


def normalize(losses, reference) -> np.ndarray:
    """Scores of ``losses`` against the reference method's losses on the same task.

    Args:
        losses: scored losses of a method's runs (see :func:`scored_loss`).
        reference: scored losses of the reference method (tuned Adam) on the task's seeds.

    Returns:
        ``log(losses) - mean(log(reference))``, shaped like ``losses``: 0 is as good as the
        reference on average, negative is better. Losses of exactly 0 are raised to ``FLOOR``.

    Raises:
        ValueError: if either is empty or holds a negative or non-finite loss.
    """
    logs = []
    for values, name in ((losses, "losses"), (reference, "reference")):
        values = _runs(values, name)
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            raise ValueError(f"{name} must be finite and non-negative (score diverged runs with "
                             f"scored_loss), got {values[bad][:3].tolist()}")
        logs.append(np.log(np.maximum(values, FLOOR)))
    return logs[0] - logs[1].mean()


def iqm(scores) -> float | np.ndarray:
    """Interquartile mean of all values of a ``(seeds, tasks)`` matrix.

    Args:
        scores: a ``(seeds, tasks)`` matrix, or a stack ``(..., seeds, tasks)`` of them.

    Returns:
        The mean of the middle 50% of the values (``scipy.stats.trim_mean`` with 0.25 cut from
        each end): a float for one matrix, an array of the leading shape for a stack.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim < 2 or scores.size == 0:
        raise ValueError(f"expected a (seeds, tasks) matrix or a stack of them, got shape "
                         f"{scores.shape}")
    if scores.ndim == 2:
        return float(stats.trim_mean(scores.ravel(), 0.25))
    return stats.trim_mean(scores.reshape(*scores.shape[:-2], -1), 0.25, axis=-1)


def stratified_bootstrap(statistic: Callable[..., np.ndarray], *matrices,
                         resamples: int = RESAMPLES, level: float = 0.95,
                         seed: int = SEED) -> tuple[float, float]:
    """Percentile interval of ``statistic`` under a stratified bootstrap of the seeds.

    Each resample draws, independently per task (column), as many seeds (rows) as there are,
    with replacement. Several matrices share the drawn rows of each task (paired: the same
    problems). Resamples are drawn in chunks, and ``statistic`` is called once per chunk.

    Args:
        statistic: maps stacks of resampled matrices, one argument per matrix, each of shape
            ``(chunk, seeds, tasks)``, to one value per resample, shape ``(chunk,)``;
            :func:`iqm` and ``lambda a, b: iqm(a) - iqm(b)`` do.
        *matrices: finite ``(seeds, tasks)`` matrices of the same shape.
        resamples: number of resamples.
        level: confidence level of the interval.
        seed: seed of the resampling.

    Returns:
        ``(low, high)``: the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
        resampled statistic.
    """
    if not matrices:
        raise ValueError("stratified_bootstrap needs at least one matrix")
    matrices = [_matrix(m, f"matrix {k}") for k, m in enumerate(matrices)]
    shape = matrices[0].shape
    if any(m.shape != shape for m in matrices):
        raise ValueError(f"paired matrices must have the same (seeds, tasks) shape, got "
                         f"{[m.shape for m in matrices]}")
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) \
            or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    seeds, tasks = shape
    rng = np.random.default_rng(seed)
    chunk = max(1, min(resamples, _CHUNK // (len(matrices) * seeds * tasks)))
    columns = np.arange(tasks)
    values = []
    for start in range(0, resamples, chunk):
        n = min(chunk, resamples - start)
        rows = rng.integers(0, seeds, size=(n, seeds, tasks))  # drawn per task, shared
        out = np.asarray(statistic(*(m[rows, columns] for m in matrices)), dtype=np.float64)
        if out.shape != (n,):
            raise ValueError(f"statistic must map stacks of shape (chunk, seeds, tasks) to one "
                             f"value per resample, shape ({n},), got shape {out.shape}")
        values.append(out)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(np.concatenate(values), [tail, 100 - tail])
    return float(lo), float(hi)


def aggregate(scores) -> dict:
    """A method's scores on the suite, from its ``(seeds, tasks)`` matrix.

    Returns:
        ``iqm`` with its interval ``ci95``, the ``mean`` of all runs, the ``median`` over
        tasks of the per-task mean score (rliable's median), and the numbers of ``runs`` and
        ``tasks``.
    """
    scores = _matrix(scores)
    lo, hi = stratified_bootstrap(iqm, scores)
    return {"iqm": iqm(scores), "ci95": [lo, hi], "mean": float(scores.mean()),
            "median": float(np.median(scores.mean(axis=0))), "runs": int(scores.size),
            "tasks": int(scores.shape[1])}


def iqm_difference(a, b) -> dict:
    """IQM of ``a`` minus IQM of ``b`` (two methods' ``(seeds, tasks)`` matrices on the same
    seeds), with its interval; both methods share the resampled seeds of each task."""
    a, b = _matrix(a, "a"), _matrix(b, "b")
    lo, hi = stratified_bootstrap(lambda x, y: iqm(x) - iqm(y), a, b)
    return {"difference": iqm(a) - iqm(b), "ci95": [lo, hi]}


def wins(scores, margin: float = 0.0) -> int:
    """Number of tasks whose mean score over the seeds is below ``-margin`` (the method beats
    the reference there by more than ``margin``)."""
    return int((_matrix(scores).mean(axis=0) < -margin).sum())


def performance_profile(scores, taus) -> np.ndarray:
    """Fraction of all runs (seeds x tasks) with a score ``<= tau``, for each of ``taus``: the
    empirical distribution function of the scores (rliable's profile, lower is better)."""
    runs = np.sort(_matrix(scores).ravel())
    taus = np.asarray(taus, dtype=np.float64)
    return np.searchsorted(runs, taus, side="right") / runs.size
