"""Benchmark scores: divergence, normalization by the reference, IQM, stratified bootstrap,
wins, performance profiles and their plot."""

import math

import numpy as np
import pytest
from scipy import stats

from phys_l2o.bench.scores import (
    FLOOR,
    aggregate,
    iqm,
    iqm_difference,
    normalize,
    performance_profile,
    scored_loss,
    stratified_bootstrap,
    wins,
)
from phys_l2o.reporting import plot_profiles


def mean_statistic(x):
    return x.mean(axis=(-2, -1))


def test_scored_loss_scores_diverged_runs_at_no_progress():
    final = np.array([0.5, np.nan, 2.0, np.inf, 0.1])
    initial = np.array([1.0, 1.0, 3.0, 4.0, 1.0])
    worst = np.array([1.0, 7.0, 3.0, 2.0, 1.0])
    diverged = np.array([False, True, True, True, False])
    scored = scored_loss(final, initial, worst, diverged)
    # every run is kept, diverged ones at max(initial, worst), the others at their final loss
    assert scored.shape == final.shape
    np.testing.assert_array_equal(scored, [0.5, 7.0, 3.0, 4.0, 0.1])
    # no finite loss along the run: the initial loss; a non-finite final loss is a divergence
    assert scored_loss([np.nan], [2.0], [np.nan], [True]).tolist() == [2.0]
    assert scored_loss([np.inf], [2.0], [5.0], [False]).tolist() == [5.0]
    with pytest.raises(ValueError, match="same shape"):
        scored_loss(final, initial[:4], worst, diverged)
    with pytest.raises(ValueError, match="finite initial or worst"):
        scored_loss([np.nan], [np.nan], [np.nan], [True])


def test_normalize_is_log_ratio_to_reference_mean_log():
    e = math.e
    np.testing.assert_allclose(normalize([e, e**2], [1.0, 1.0]), [1.0, 2.0])
    # the reference's geometric mean is the zero
    np.testing.assert_allclose(normalize([2.0, 8.0], [1.0, 16.0]), [np.log(0.5), np.log(2.0)])
    reference = np.random.default_rng(0).exponential(size=7)
    assert normalize(reference, reference).mean() == pytest.approx(0.0, abs=1e-12)
    # a loss of exactly 0 is scored at the floor, not at minus infinity
    assert normalize([0.0], [1.0])[0] == pytest.approx(np.log(FLOOR))
    for bad in ([-1.0], [np.nan], [np.inf]):
        with pytest.raises(ValueError, match="losses must be finite and non-negative"):
            normalize(bad, [1.0])
        with pytest.raises(ValueError, match="reference must be finite and non-negative"):
            normalize([1.0], bad)
    with pytest.raises(ValueError, match="empty"):
        normalize([], [1.0])


def test_iqm_trims_a_quarter_from_each_end():
    values = np.arange(100.0)
    assert iqm(values.reshape(20, 5)) == pytest.approx(49.5)
    assert iqm(values.reshape(20, 5)) == stats.trim_mean(values, 0.25)
    # outliers in the top and bottom quarter are ignored
    scores = np.ones((4, 5))
    scores[0, :2] = 1e6
    scores[3, 3] = -1e6
    assert iqm(scores) == pytest.approx(1.0)
    assert scores.mean() > 1e4
    # a stack of matrices gives one IQM each
    stack = np.stack([values.reshape(20, 5), 2 * values.reshape(20, 5)])
    np.testing.assert_allclose(iqm(stack), [49.5, 99.0])
    with pytest.raises(ValueError, match="matrix"):
        iqm(values)


def test_bootstrap_of_constant_data_is_a_point():
    assert stratified_bootstrap(iqm, np.full((6, 4), 2.5)) == (2.5, 2.5)
    # with one seed per task, every resample is the matrix itself
    one_seed = np.random.default_rng(1).normal(size=(1, 12))
    assert stratified_bootstrap(iqm, one_seed) == (iqm(one_seed), iqm(one_seed))


def test_bootstrap_resamples_seeds_within_each_task():
    # tasks that differ but whose seeds agree: every stratified resample is the same multiset,
    # while resampling all runs together would mix the tasks and give a wide interval
    scores = np.tile(np.array([0.0, 10.0, 20.0, 30.0]), (5, 1))
    lo, hi = stratified_bootstrap(mean_statistic, scores)
    assert lo == pytest.approx(15.0) and hi == pytest.approx(15.0)
    # shifting one task by a constant shifts the mean's interval by its share
    rng = np.random.default_rng(2)
    noisy = rng.normal(size=(8, 4))
    shifted = noisy + np.array([0.0, 0.0, 0.0, 4.0])
    lo, hi = stratified_bootstrap(mean_statistic, noisy)
    slo, shi = stratified_bootstrap(mean_statistic, shifted)
    assert (slo, shi) == pytest.approx((lo + 1.0, hi + 1.0))
    # the seeds of different tasks are drawn independently: a seed effect shared by all tasks
    # averages out over them (one draw for all tasks would keep the width of 8 seeds)
    seed_effect = np.tile(rng.normal(size=(8, 1)), (1, 12))
    lo, hi = stratified_bootstrap(mean_statistic, seed_effect)
    spread = seed_effect[:, 0].std()
    assert hi - lo == pytest.approx(2 * 1.96 * spread / np.sqrt(8 * 12), rel=0.25)


def test_bootstrap_interval_contains_estimate_and_truth():
    rng = np.random.default_rng(3)
    scores = rng.normal(loc=3.0, scale=1.0, size=(10, 12))
    lo, hi = stratified_bootstrap(mean_statistic, scores)
    assert lo < 3.0 < hi
    assert lo < scores.mean() < hi
    # about 1.96 standard errors either side
    assert (hi - lo) == pytest.approx(2 * 1.96 / np.sqrt(scores.size), rel=0.2)
    lo, hi = stratified_bootstrap(iqm, scores)
    assert lo < iqm(scores) < hi
    # deterministic for a seed, different for another
    assert stratified_bootstrap(iqm, scores) == (lo, hi)
    assert stratified_bootstrap(iqm, scores, seed=1) != (lo, hi)
    # the interval narrows with the level
    nlo, nhi = stratified_bootstrap(iqm, scores, level=0.5)
    assert lo < nlo < nhi < hi


def test_bootstrap_checks_its_inputs():
    good = np.zeros((5, 3))
    with pytest.raises(ValueError, match="non-finite"):
        stratified_bootstrap(iqm, np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="same"):
        stratified_bootstrap(lambda a, b: iqm(a) - iqm(b), good, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="one value per resample"):
        stratified_bootstrap(np.mean, good)
    with pytest.raises(ValueError, match="at least one matrix"):
        stratified_bootstrap(iqm)
    with pytest.raises(ValueError, match="level"):
        stratified_bootstrap(iqm, good, level=1.0)
    with pytest.raises(ValueError, match="resamples"):
        stratified_bootstrap(iqm, good, resamples=0)


def test_paired_difference_shares_the_seeds():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(6, 12))
    assert iqm_difference(a, a) == {"difference": 0.0, "ci95": [0.0, 0.0]}
    # a constant shift of every run is exactly the shift in every shared resample
    shifted = iqm_difference(a - 0.5, a)
    assert shifted["difference"] == pytest.approx(-0.5)
    assert shifted["ci95"] == pytest.approx([-0.5, -0.5])
    # unpaired noise gives a real interval around the difference
    b = rng.normal(size=(6, 12))
    diff = iqm_difference(a, b)
    lo, hi = diff["ci95"]
    assert lo < diff["difference"] < hi and hi - lo > 0.1


def test_aggregate_summary():
    scores = np.arange(60.0).reshape(5, 12)
    summary = aggregate(scores)
    assert summary["iqm"] == pytest.approx(stats.trim_mean(np.arange(60.0), 0.25))
    assert summary["mean"] == pytest.approx(29.5)
    # rliable's median: over tasks, of the mean score per task
    scores[:, 0] = [0.0, 0.0, 0.0, 0.0, 1000.0]
    assert aggregate(scores)["median"] == pytest.approx(np.median(scores.mean(axis=0)))
    assert summary["runs"] == 60 and summary["tasks"] == 12
    lo, hi = summary["ci95"]
    assert lo < summary["iqm"] < hi


def test_wins_count_tasks_beaten_on_average():
    scores = np.array([[-1.0, 0.5, -0.2, 0.0],
                       [-1.0, -2.0, -0.2, 0.0]])
    # task means: -1, -0.75, -0.2, 0 (a tie is not a win)
    assert wins(scores) == 3
    assert wins(scores, margin=0.5) == 2
    assert wins(scores, margin=1.0) == 0
    assert wins(-scores) == 0


def test_performance_profile_is_the_runs_distribution():
    scores = np.array([[-2.0, 0.0, 1.0],
                       [-1.0, 0.0, 3.0]])
    taus = np.array([-3.0, -2.0, -0.5, 0.0, 2.0, 3.0])
    np.testing.assert_allclose(performance_profile(scores, taus),
                               [0.0, 1 / 6, 2 / 6, 4 / 6, 5 / 6, 1.0])


def test_plot_profiles_writes_a_png(tmp_path):
    rng = np.random.default_rng(5)
    taus = np.linspace(-3, 3, 61)
    profiles = {"hnn": performance_profile(rng.normal(-0.5, size=(5, 12)), taus),
                "sgd": performance_profile(rng.normal(0.5, size=(5, 12)), taus)}
    path = tmp_path / "plots" / "profiles.png"
    plot_profiles(path, profiles, taus, "held-out tasks", names={"hnn": "HNN"})
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(b"\x89PNG")
