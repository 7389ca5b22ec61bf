"""The held-out suite: its file, the check that keeps its tasks out of meta-training, the bench
command (tuning, cells that are reused, divergence counted), the claim it decides, and the
step-cost measurement."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from phys_l2o import build
from phys_l2o.bench import SuiteError, check_not_heldout, load_suite, parse_suite
from phys_l2o.bench.speed import default_factories, step_costs
from phys_l2o.cli import main
from phys_l2o.experiments.claims import (
    FAILS,
    HOLDS,
    UNDECIDED,
    heldout_claim,
    structure_claim,
)
from phys_l2o.optim import pretrained_info, pretrained_names

#: the task each shipped optimizer was meta-trained on, as its manifest names it.
TRAINING_TASKS = {"quadratic": {"type": "quadratic", "dim": 10},
                  "mnist": {"type": "mnist", "activation": "sigmoid", "hidden": 20}}


def test_the_heldout_suite_has_ten_tasks_of_five_families_with_tuning_and_seeds():
    suite = load_suite("heldout")
    families = {t.spec["type"] for t in suite.tasks}
    assert len(suite.tasks) >= 10 and len(families) >= 5
    assert suite.seeds >= 5 and suite.tuning_seeds >= 1
    assert len(suite.grid) >= 7 and set(suite.baselines) >= {"adam", "sgd", "rmsprop"}
    assert suite.reference == "adam"
    assert {"type": "adam", "lr": 1e-3} in suite.untuned.values()
    specs = {t.name: t.spec for t in suite.tasks}
    assert any(s["type"] == "mnist-cnn" for s in specs.values())
    assert any(s["type"] == "mnist-mlp" and s.get("depth", 1) >= 3
               and s.get("activation") == "relu" for s in specs.values())


def test_the_suite_tasks_without_mnist_build_and_sample():
    suite = load_suite("heldout")
    from phys_l2o.bench.suite import build_suite_task

    for held in suite.tasks:
        if held.spec["type"].startswith("mnist"):
            continue
        task = build_suite_task(held)
        problems = task.sample(2, torch.Generator().manual_seed(0))
        params = task.init_params(problems)
        loss, grad = task.loss_and_grad(params, problems, 0)
        assert loss.shape == (2,) and grad.shape == params.shape
        assert task.final_losses(params, problems)["train"].shape == (2,)


def test_no_shipped_optimizer_was_meta_trained_on_a_heldout_task():
    for name in pretrained_names():
        info = pretrained_info(name)
        # a sweep's optimizer states its training distribution; the paper's, a task name
        specs = [info["task_spec"] if "task_spec" in info else TRAINING_TASKS[info["task"]]]
        while specs:  # a mixture's tasks and an augmented task's task, down to the families
            spec = specs.pop()
            specs += spec.get("tasks", []) + ([spec["task"]] if "task" in spec else [])
            if spec["type"] not in ("mixture", "augmented"):
                check_not_heldout(spec)  # does not raise


def test_heldout_tasks_are_refused_as_meta_training_tasks_whatever_their_steps():
    suite = load_suite("heldout")
    for held in suite.tasks:
        with pytest.raises(SuiteError, match=held.name):
            check_not_heldout(held.spec)
        with pytest.raises(SuiteError, match="held-out"):
            check_not_heldout({**held.spec, "steps": 7, "batch_size": 3}
                              if "batch_size" in held.spec else held.spec)
    task = build({"type": "quadratic", "dim": 50}, "task")  # an object, not a spec
    with pytest.raises(SuiteError, match="quadratic-50d"):
        check_not_heldout(task)
    check_not_heldout({"type": "quadratic", "dim": 49})
    from phys_l2o import ModuleTask

    check_not_heldout(ModuleTask(lambda: torch.nn.Linear(4, 3), torch.randn(16, 4),
                                 torch.randint(0, 3, (16,)), batch_size=4, steps=3))


@pytest.mark.parametrize("change, message", [
    ({"colour": 1}, "unknown keys"),
    ({"tuning": {"grid": [0.1]}}, "at least 2"),
    ({"tuning": {"grid": [0.1, -1.0]}}, "positive"),
    ({"tuning": {"baselines": ["adamw"]}}, "not a baseline"),
    ({"reference": "sgd", "tuning": {"baselines": ["adam"]}}, "reference"),
    ({"tasks": {"a": {"type": "no-such-task"}}}, "no-such-task"),
    ({"tasks": {"a": {"type": "quadratic", "steps": 0}}}, "steps"),
    ({"tasks": {}}, "at least one task"),
    ({"seeds": 0}, "seeds"),
])
def test_bad_suite_files_are_refused_with_the_reason(change, message):
    data = {"name": "s", "tasks": {"q": {"type": "quadratic", "dim": 3}}, **change}
    with pytest.raises(SuiteError, match=message):
        parse_suite(data, "s.toml")


def test_an_unknown_suite_is_refused(tmp_path):
    with pytest.raises(SuiteError, match="heldout"):
        load_suite("no-such-suite")


TINY = """
name = "tiny"
description = "two small quadratics"
seeds = 3
tuning_seeds = 2
[tuning]
baselines = ["adam", "sgd", "rmsprop"]
grid = [1e-3, 1e-2, 0.1, 1.0]
[untuned]
adam-1e-3 = { type = "adam", lr = 1e-3 }
sgd-huge = { type = "sgd", lr = 10.0 }
[tasks.cond]
type = "conditioned-quadratic"
dim = 5
condition = 10.0
steps = STEPS
[tasks.q3]
type = "quadratic"
dim = 3
steps = 15
"""


def _bench(tmp_path, capsys, steps=20, extra=()):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY.replace("STEPS", str(steps)))
    out = tmp_path / "out"
    code = main(["bench", str(suite), "--optimizers", "hnn-quadratic", "--out", str(out),
                 "--no-speed", "--no-progress", *extra])
    return code, out, capsys.readouterr().out


def test_bench_scores_every_method_counts_divergence_and_reuses_its_cells(tmp_path, capsys):
    code, out, printed = _bench(tmp_path, capsys)
    assert code == 0
    # 2 tasks x (3 baselines x (4 learning rates + 1) + 3 other methods)
    assert "36 cells computed, 0 reused" in printed
    results = json.loads((out / "results.json").read_text())
    methods = results["methods"]
    assert set(methods) == {"adam", "sgd", "rmsprop", "adam-1e-3", "sgd-huge", "hnn-quadratic"}
    for task in ("cond", "q3"):  # the reference scores 0 on average, by definition
        assert methods["adam"]["tasks"][task]["score"] == pytest.approx(0, abs=1e-12)
        assert results["tuned"][task]["adam"]["lr"] in (1e-3, 1e-2, 0.1, 1.0)
    huge = methods["sgd-huge"]
    assert huge["diverged"] == huge["runs"] == 6  # every run, counted, none dropped
    assert all(np.isfinite(huge["tasks"][t]["scores"]).all() and len(
        huge["tasks"][t]["scores"]) == 3 for t in ("cond", "q3"))
    assert huge["train"]["iqm"] > methods["adam"]["train"]["iqm"]
    assert "6 of 6" in (out / "results.md").read_text()
    assert (out / "profile.png").stat().st_size > 0

    code, _, printed = _bench(tmp_path, capsys)  # the same run again: nothing to compute
    assert code == 0 and "0 cells computed, 36 reused" in printed
    assert json.loads((out / "results.json").read_text())["methods"] == methods

    code, _, printed = _bench(tmp_path, capsys, steps=25)  # one task changed: its cells only
    assert code == 0 and "18 cells computed, 18 reused" in printed


def test_tuning_never_uses_the_evaluation_problems(tmp_path, capsys):
    _, out, _ = _bench(tmp_path, capsys)
    tuning = json.loads((out / "tuning" / "q3" / "adam-lr-1e-2.json").read_text())
    cell = json.loads((out / "cells" / "q3" / "adam.json").read_text())
    assert tuning["key"]["stream"] != cell["key"]["stream"]
    assert tuning["initial"] != cell["initial"][:2]


def test_checkpoints_can_be_named_and_two_of_one_name_are_refused(tmp_path):
    from phys_l2o import HNN, save_checkpoint
    from phys_l2o.bench.run import learned_method, suite_methods

    save_checkpoint(tmp_path / "seed-0.pt", HNN())
    method = learned_method(f"mine={tmp_path / 'seed-0.pt'}")
    assert method.name == "mine" and method.source == str(tmp_path / "seed-0.pt")
    with pytest.raises(ValueError, match="two methods are named 'seed-0'"):
        suite_methods(load_suite("heldout"), [str(tmp_path / "seed-0.pt")] * 2)
    with pytest.raises(ValueError, match="NAME=CHECKPOINT"):
        learned_method("=x.pt")


def test_bench_refuses_an_unknown_optimizer_and_a_sweep_folder(tmp_path, capsys):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY.replace("STEPS", "5"))
    assert main(["bench", str(suite), "--optimizers", "nope.pt", "--out",
                 str(tmp_path / "o"), "--no-speed"]) == 2
    assert "neither a pretrained optimizer" in capsys.readouterr().err
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_text("{}")
    assert main(["bench", str(suite), "--out", str(tmp_path / "sweep"), "--no-speed"]) == 2
    assert "sweep" in capsys.readouterr().err


def _sweep_folder(path):
    """A sweep's run folder with two finished meta-seeds of `hnn plain`, one of `hnn big` and
    one cell still training."""
    from phys_l2o import HNN, save_checkpoint
    from phys_l2o.experiments.folder import FORMAT

    variants = {"hnn plain": [0, 1], "hnn big": [0]}
    (path / "cells").mkdir(parents=True)
    (path / "sweep.json").write_text(json.dumps({"format": FORMAT, "budget": "cpu", "sweep": {
        "name": "mine", "train": {"type": "quadratic"},
        "variants": [{"name": "hnn big"}, {"name": "hnn plain", "estimator": {"type": "es"}}]}}))
    for variant, seeds in variants.items():
        cell = path / "cells" / variant.replace(" ", "-")
        cell.mkdir()
        for seed in seeds:
            torch.manual_seed(seed)
            save_checkpoint(cell / f"seed-{seed}.pt", HNN(out_mul=0.01 * (1 + seed)))
            finals = [1.0 - 0.5 * seed, 2.0, None if seed == 0 else 0.5]  # seed 1 is better
            (cell / f"seed-{seed}.json").write_text(json.dumps(
                {"format": FORMAT, "kind": "learned", "method": variant, "seed": seed,
                 "seconds": 60.0, "targets": {"mine": {"final": finals}},
                 "versions": {"commit": f"{seed}bcdef0123"}}))
    (path / "cells" / "hnn-big" / "seed-1.training.pt").write_bytes(b"")
    return path


def test_a_sweep_folder_is_scored_as_variants_compared_over_meta_seeds(tmp_path, capsys):
    from phys_l2o.bench.run import sweep_methods

    sweep = _sweep_folder(tmp_path / "sweep")
    methods = sweep_methods(sweep)
    assert [(m.name, m.group) for m in methods] == [
        ("hnn-big-s0", "hnn big"), ("hnn-plain-s0", "hnn plain"), ("hnn-plain-s1", "hnn plain")]
    code, out, printed = _bench(tmp_path, capsys, extra=("--optimizers", str(sweep)))
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    level = results["seed_level"]
    plain = level["groups"]["hnn plain"]
    assert plain["members"] == ["hnn-plain-s0", "hnn-plain-s1"]
    assert plain["iqm"] == [results["methods"][n]["train"]["iqm"] for n in plain["members"]]
    assert plain["ci95"][0] <= plain["mean"] <= plain["ci95"][1]
    # a variant of several meta-seeds against every baseline (5); one run is compared with
    # nothing (it would decide nothing)
    pairs = [(c["a"], c["b"]) for c in level["comparisons"]]
    assert len(pairs) == 5 and all(a == "hnn plain" for a, _ in pairs)
    assert level["groups"]["hnn big"]["ci95"] is None
    assert "## Meta-seeds" in (out / "results.md").read_text()

    # ship a variant: the meta-seed best on the sweep's own targets, byte for byte
    from phys_l2o.pretrained.pack import note_generalization, pack_sweep

    into = tmp_path / "into"
    into.mkdir()
    with pytest.raises(FileNotFoundError, match="no results.json"):
        pack_sweep(sweep, "hnn plain", "hnn-general", into)
    (sweep / "results.json").write_text(json.dumps(
        {"command": f"phys-l2o sweep mine.toml --out {tmp_path}/x"}))
    with pytest.raises(FileNotFoundError, match="no finished cell of variant 'nope'"):
        pack_sweep(sweep, "nope", "hnn-general", into)
    entry = pack_sweep(sweep, "hnn plain", "hnn-general", into)["optimizers"]["hnn-general"]
    assert entry["seed"] == 1 and entry["estimator"] == {"type": "es"}
    assert entry["commit"] == "1bcdef0"  # the commit its cell was made at
    assert entry["command"] == "phys-l2o sweep mine.toml --out runs/mine"
    assert entry["test"]["mine"] == {"mean": 1.0, "diverged": 0, "problems": 3}
    assert (into / "hnn-general.pt").read_bytes() == (
        sweep / "cells" / "hnn-plain" / "seed-1.pt").read_bytes()
    noted = note_generalization(out, into)["optimizers"]["hnn-general"]["generalization"]
    assert noted["iqm"] == results["methods"]["hnn-plain-s1"]["train"]["iqm"]
    assert noted["note"].endswith(".")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "sweep.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no cell records"):
        sweep_methods(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no sweep run"):
        sweep_methods(tmp_path)


def _fake_results(tmp_path, hnn: float, lstm: float):
    def method(value):
        return {"tasks": {f"t{k}": {"scores": list(value + 0.01 * np.arange(5) * (k - 2))}
                          for k in range(6)}}

    results = {"suite": {"seeds": 5}, "methods": {"hnn-mnist": method(hnn),
                                                  "lstm-mnist": method(lstm)}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    return tmp_path


def test_the_heldout_claim_of_one_optimizer_each_is_one_run_and_decides_nothing(tmp_path):
    """The shipped optimizers are one meta-trained optimizer each: however clear the interval
    over the tasks' problems, the claim stays undecided and says which way it points."""
    def verdict(hnn, lstm):
        return heldout_claim(_fake_results(tmp_path, hnn, lstm), "hnn-mnist", "lstm-mnist")

    for hnn, lstm, way in ((-1.0, 1.0, "hnn-mnist lower"), (1.0, -1.0, "hnn-mnist higher"),
                           (0.0, 0.0, "neither side")):
        held, evidence = verdict(hnn, lstm)
        assert held == UNDECIDED and way in evidence and "one run" in evidence
    evidence = verdict(-1.0, 1.0)[1]
    assert "hnn-mnist - lstm-mnist -2" in evidence and "6 tasks x 5 seeds" in evidence
    with pytest.raises(KeyError):
        heldout_claim(tmp_path, "hnn-quadratic", "lstm-quadratic")


def test_step_costs_report_time_and_the_state_adam_keeps():
    costs = step_costs(default_factories([("hnn-mnist", "hnn-mnist")]), steps=1,
                       widths=(8, 16, 4))
    params = 8 * 16 + 16 + 16 * 4 + 4
    assert set(costs) == {"Adam", "SGD+momentum", "hnn-mnist"}
    assert all(c["params"] == params and c["step_ms"] > 0 for c in costs.values())
    adam = costs["Adam"]["state_bytes"]
    assert 2 * 4 * params <= adam <= 2 * 4 * params + 8 * 4  # two moments, a step per tensor
    assert costs["SGD+momentum"]["state_bytes"] == 4 * params


def test_the_structure_claims_are_decided_over_meta_seeds(tmp_path):
    from phys_l2o.bench.report import seed_level

    def verdict(hnn, mlp):
        methods = {f"{group}-s{k}": {"kind": "learned", "group": group, "diverged": 0,
                                     "runs": 60, "train": {"iqm": value}}
                   for group, values in (("hnn features", hnn), ("mlp", mlp))
                   for k, value in enumerate(values)}
        (tmp_path / "results.json").write_text(json.dumps({"seed_level": seed_level(methods)}))
        return structure_claim(tmp_path, "hnn features", "mlp")

    assert verdict([0.2, 0.25, 0.22], [0.6, 0.7, 0.65])[0] == HOLDS
    assert verdict([0.6, 0.7, 0.65], [0.2, 0.25, 0.22])[0] == FAILS
    held, evidence = verdict([0.2, 0.7, 0.22], [0.6, 0.25, 0.65])  # seeds that disagree
    assert held == UNDECIDED and "in 6 of 9 seed pairs" in evidence
    with pytest.raises(KeyError):  # one meta-seed each is no comparison: it decides nothing
        verdict([0.2], [0.6])
    with pytest.raises(KeyError):
        structure_claim(tmp_path, "hnn features", "lstm")
