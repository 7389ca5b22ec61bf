"""The claims table decides each claim by its paired intervals (``phys-l2o claims``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from phys_l2o.cli import main
from phys_l2o.experiments.claims import (
    FAILS,
    HOLDS,
    MISSING,
    UNDECIDED,
    better,
    claims_markdown,
    comparable,
    decide,
)
from phys_l2o.experiments.folder import FORMAT
from phys_l2o.meta.stats import compare

PROBLEMS = 60


def write_run(folder, targets: dict[str, dict[str, list[np.ndarray]]], params: dict[str, int]):
    """Cell records: per method, one finals array per seed (one for a baseline)."""
    methods = {m for t in targets.values() for m in t}
    for method in methods:
        seeds = max(len(t[method]) for t in targets.values() if method in t)
        for k in range(seeds):
            learned = method in params
            record = {"format": FORMAT, "method": method, "seed": k if learned else None,
                      "params": params.get(method),
                      "targets": {label: {"final": t[method][k].tolist()}
                                  for label, t in targets.items() if method in t}}
            name = f"seed-{k}.json" if learned else "baseline.json"
            (folder / "cells" / method).mkdir(parents=True, exist_ok=True)
            (folder / "cells" / method / name).write_text(json.dumps(record))


def losses(mean: float, seeds: int = 1, spread: float = 0.05, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [mean + spread * rng.standard_normal(PROBLEMS) for _ in range(seeds)]


def test_better_and_comparable_decide_where_both_levels_agree():
    rng = np.random.default_rng(0)
    base = rng.random(PROBLEMS) + 1.0  # a baseline: one run, (problems,)

    def learned(offset, seeds=5, spread=0.02):
        return base + offset + spread * rng.standard_normal((seeds, 1)) + 0.01 * (
            rng.standard_normal((seeds, PROBLEMS)))

    finals = {"a": learned(-0.5), "b": base, "c": learned(0.0, spread=0.001),
              "noisy": learned(0.0, spread=1.0), "once": learned(-0.5, seeds=1),
              "wide": learned(-0.5, seeds=3, spread=0.5)}
    assert better(finals, "a", ["b"])[0] == HOLDS
    assert better(finals, "b", ["a"])[0] == FAILS
    assert better(finals, "noisy", ["b"])[0] == UNDECIDED
    assert comparable(finals, "c", ["b"])[0] == HOLDS
    assert comparable(finals, "a", ["b"])[0] == FAILS
    assert comparable(finals, "noisy", ["b"])[0] == UNDECIDED
    verdict, text = better(finals, "a", ["b"])
    assert "a - b -0.5" in text and "a lower in 5 of 5 seeds" in text and "Wilcoxon" in text
    # one meta-seed never decides, however clear its interval over problems
    assert compare(finals["once"], finals["b"])["boot"]["ci95"][1] < 0
    verdict, text = better(finals, "once", ["b"])
    assert verdict == UNDECIDED and "one run" in text
    assert comparable(finals, "once", ["once"])[0] == UNDECIDED
    # seeds that disagree: the bootstrap over problems is sure, the seeds are not
    wide = compare(finals["wide"], finals["b"])
    assert wide["direction"] is None or wide["seeds"]["ci95"][1] < 0


@pytest.mark.parametrize("seeds", [3, 10])
def test_the_reported_seed_interval_is_calibrated(seeds, monkeypatch):
    """Simulated cells with a known difference and meta-seeds that vary as meta-trainings do:
    the seed-level interval a claim reports covers the truth at its stated 95% (within
    0.91-0.99 over 300 simulations), where the crossed bootstrap alone does not at 3 seeds."""
    import phys_l2o.meta.stats as stats

    monkeypatch.setattr(stats, "RESAMPLES", 400)  # the bootstrap's coverage, sooner
    rng = np.random.default_rng(100 + seeds)
    problems = rng.gamma(1.0, 0.3, size=40)  # shared test problems, heavy-tailed
    truth, covered, boot_covered, trials = -0.2, 0, 0, 300
    for _ in range(trials):
        def cell(mean, spread):
            seed_means = mean + spread * rng.standard_normal((seeds, 1))
            return problems + seed_means + 0.05 * rng.standard_normal((seeds, problems.size))
        # truth: the difference of the methods' means over meta-seeds on these problems
        c = compare(cell(0.3, 0.2), cell(0.5, 0.3))
        lo, hi = c["seeds"]["ci95"]
        covered += lo <= truth <= hi
        lo, hi = c["boot"]["ci95"]
        boot_covered += lo <= truth <= hi
    print(f"{seeds} seeds: t-interval covers {covered / trials:.3f}, bootstrap "
          f"{boot_covered / trials:.3f}")
    assert 0.91 <= covered / trials <= 0.99
    if seeds == 3:
        assert boot_covered / trials < 0.9


def test_the_table_from_two_protocols(tmp_path, capsys):
    base = {b: losses(0.3, seed=i) for i, b in enumerate(("adam", "rmsprop", "sgd", "nag"))}
    tuned = {f"{b}-tuned": losses(0.29, seed=20 + i)
             for i, b in enumerate(("adam", "rmsprop", "sgd", "nag"))}
    params = {"hnn": 19, "lstm": 5221}
    write_run(tmp_path / "q", {"quadratic": {"hnn": losses(0.1, 3, seed=7),
                                             "lstm": losses(0.2, 3, seed=8), **base, **tuned}},
              params)
    write_run(tmp_path / "m", {"sigmoid": {"hnn": losses(0.3, 3, seed=9),
                                           "lstm": losses(0.1, 3, seed=10), **base},
                               "relu": {"hnn": losses(0.3, 3, seed=11),
                                        "lstm": losses(2.3, 3, seed=12), **base}},
              {"hnn": 55, "lstm": 5301})
    rows = decide({"corrected": [tmp_path / "q", tmp_path / "m"]})
    verdicts = [row["corrected"]["verdict"] for row in rows]
    assert verdicts == [HOLDS] * 8
    assert rows[0]["corrected"]["seeds"] == {"hnn": 3, "lstm": 3}
    assert "hnn - adam-tuned" in rows[1]["corrected"]["evidence"]
    assert rows[1]["corrected"]["evidence"].startswith("against the tuned baselines")
    assert "paper's rates" in rows[3]["corrected"]["evidence"]  # the MNIST run has no tuned
    assert "275x" in rows[-1]["corrected"]["evidence"]
    text = claims_markdown(rows, ["corrected"])
    assert text.count("**holds**") == 8 and "(HNN 3 seeds, LSTM 3 seeds)" in text
    capsys.readouterr()
    assert main(["claims", f"corrected={tmp_path / 'q'},{tmp_path / 'm'}",
                 "--out", str(tmp_path / "claims.md")]) == 0
    assert (tmp_path / "claims.md").read_text() == text + "\n"
    assert capsys.readouterr().out == text + "\n"


def test_a_claim_that_rests_on_one_meta_seed_is_undecided(tmp_path):
    base = {b: losses(0.3, seed=i) for i, b in enumerate(("adam", "rmsprop", "sgd", "nag"))}
    write_run(tmp_path / "m", {"sigmoid": {"hnn": losses(0.3, 3, seed=9),
                                           "lstm": losses(0.1, 1, seed=10), **base},
                               "relu": {"hnn": losses(0.3, 3, seed=11),
                                        "lstm": losses(2.3, 1, seed=12), **base}},
              {"hnn": 55, "lstm": 5301})
    rows = {row["claim"]: row["corrected"] for row in decide(
        {"corrected": [tmp_path / "no-quadratic", tmp_path / "m"]})}
    best = rows["sigmoid MNIST: the LSTM is best"]
    assert best["verdict"] == UNDECIDED and best["evidence"].count("one run") == 5
    assert rows["ReLU MNIST: the HNN transfers better than the LSTM"]["verdict"] == UNDECIDED
    assert rows["sigmoid MNIST: the HNN is comparable to the baselines"]["verdict"] == HOLDS


def test_claims_of_a_run_not_there_are_left_out(tmp_path):
    base = {b: losses(0.3, seed=i) for i, b in enumerate(("adam", "rmsprop", "sgd", "nag"))}
    write_run(tmp_path / "q", {"quadratic": {"hnn": losses(0.1, 3, seed=7),
                                             "lstm": losses(0.2, 3, seed=8), **base}},
              {"hnn": 19, "lstm": 5221})
    rows = decide({"corrected": [tmp_path / "q", tmp_path / "no-mnist-yet"]})
    assert [row["corrected"]["verdict"] for row in rows[:3]] == [HOLDS] * 3
    assert all(row["corrected"]["verdict"] == MISSING for row in rows[3:])
    text = claims_markdown(rows, ["corrected"])
    assert len(text.splitlines()) == 5 and "MNIST" not in text


def test_a_run_without_cells_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no cell records"):
        decide({"corrected": [tmp_path, tmp_path]})
    with pytest.raises(SystemExit):
        main(["claims", "corrected=only-one-folder"])


def test_provenance_counts_untracked_files_and_hashes_the_source(tmp_path):
    """A cell computed by a module that was never committed reads ``dirty``; the source hash
    changes with any source file's content."""
    import shutil
    import subprocess

    from phys_l2o.reporting.results import git_state, source_hash

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "one")
    commit, dirty = git_state(package)
    assert len(commit) == 40 and dirty is False
    before = source_hash(package)
    (package / "new.py").write_text("y = 2\n")  # untracked
    assert git_state(package) == (commit, True)
    assert source_hash(package) != before
    (package / "new.py").unlink()
    assert source_hash(package) == before
    (package / "a.py").write_text("x = 2\n")  # modified
    assert git_state(package)[1] is True and source_hash(package) != before
