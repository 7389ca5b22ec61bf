"""Meta-training over a distribution of tasks: mixtures, the scale-free objective, random
horizons, estimators given by spec, and the refusal of held-out tasks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import phys_l2o
from phys_l2o import HNN, QuadraticTask, Schedule, build, meta_train, spec_of
from phys_l2o.bench import SuiteError
from phys_l2o.meta import GradientEstimator, MetaTrainer, TruncatedBPTT
from phys_l2o.meta.estimators import truncated_rollout
from phys_l2o.meta.train import validation_loss
from phys_l2o.tasks import TaskMixture

TINY = Schedule(epochs=2, trajectories=6, steps=8, unroll=4, validation_problems=3)


class Recorder(TruncatedBPTT):
    """Truncated backprop that records the task and steps of each trajectory."""

    def __init__(self, unroll: int = 4) -> None:
        super().__init__(unroll)
        self.seen: list[tuple[int, int]] = []

    def trajectory(self, optimizer, task, problems, steps, meta_step) -> None:
        self.seen.append((task.num_coords, steps))
        super().trajectory(optimizer, task, problems, steps, meta_step)


def mixture(weights=None) -> TaskMixture:
    return build({"type": "mixture", "tasks": [{"type": "quadratic", "dim": 3},
                                               {"type": "quadratic", "dim": 5}],
                  "weights": weights}, "task")


def test_a_mixture_draws_its_tasks_by_weight_and_deterministically():
    tasks = mixture([3, 1])
    draws = [tasks.draw(torch.Generator().manual_seed(k)).num_coords for k in range(2000)]
    assert abs(draws.count(3) / 2000 - 0.75) < 0.03
    again = [tasks.draw(torch.Generator().manual_seed(k)).num_coords for k in range(50)]
    assert again == draws[:50]
    assert [t.num_coords for t in tasks.components()] == [3, 5]
    assert build(spec_of(tasks), "task").weights == tasks.weights == [0.75, 0.25]


def test_a_mixture_has_no_problems_of_its_own_and_checks_its_options():
    with pytest.raises(TypeError, match="draw a task first"):
        mixture().sample(2, torch.Generator())
    with pytest.raises(TypeError, match="draw a task first"):
        _ = mixture().segments
    for weights in ([1], [1, -1], [1, float("nan")], [True, 1]):
        with pytest.raises(ValueError, match="weights"):
            mixture(weights)
    with pytest.raises(ValueError, match="non-empty"):
        build({"type": "mixture", "tasks": []}, "task")


def test_a_plain_task_draws_nothing():
    task, generator = QuadraticTask(4), torch.Generator().manual_seed(3)
    before = generator.get_state()
    assert task.draw(generator) is task and task.horizon_steps(generator, 7) == 7
    assert torch.equal(generator.get_state(), before) and task.components() == [task]


def test_meta_training_on_a_mixture_runs_each_task_at_its_size():
    recorder = Recorder()
    optimizer = HNN()
    trainer = MetaTrainer(optimizer, mixture(), TINY, estimator=recorder)
    state = trainer.run(trainer.init())
    assert {coords for coords, _ in recorder.seen} == {3, 5}   # problems of both sizes
    assert len(trainer.validation) == 2                        # each task validated
    assert math.isfinite(state.result.best_validation)


def test_random_horizons_reach_the_estimator():
    recorder = Recorder()
    task = build({"type": "augmented", "task": {"type": "quadratic", "dim": 3},
                  "horizon": [3, 6]}, "task")
    trainer = MetaTrainer(HNN(), task, TINY, estimator=recorder)
    trainer.run(trainer.init())
    steps = {s for _, s in recorder.seen}
    assert steps <= {3, 4, 5, 6} and len(steps) > 1


def test_the_log_ratio_objective_sums_log_loss_over_initial_loss():
    task = QuadraticTask(4)
    problems = task.sample(3, torch.Generator().manual_seed(0))
    losses, optimizer = [], HNN()
    curve = truncated_rollout(optimizer, task, problems, 6, 3, lambda total: losses.append(
        float(total.detach())) or True, objective="log-ratio")
    initial, _ = task.loss_and_grad(task.init_params(problems), problems, 0)
    terms = torch.log(curve / initial[:, None]).mean(0)
    assert losses == pytest.approx([float(terms[:3].sum()), float(terms[3:].sum())], rel=1e-5)
    value = validation_loss(optimizer, task, problems, 6, objective="log-ratio")
    assert value == pytest.approx(float(torch.log(curve[:, -1] / initial).mean()), rel=1e-5)


def test_the_log_ratio_objective_is_the_same_for_a_rescaled_task():
    """A task whose losses are 1,000 times larger gives the same log-ratio validation (the
    objective does not depend on a task's scale of losses)."""
    plain = {"type": "quadratic", "dim": 4}
    scaled = build({"type": "augmented", "task": plain, "loss_scale": [1e3, 1e3]}, "task")
    plain = build(plain, "task")
    problems = plain.sample(3, torch.Generator().manual_seed(1))
    scaled_problems = scaled.sample(3, torch.Generator().manual_seed(1))
    optimizer = build({"type": "adam", "lr": 0.1}, "baseline")
    assert validation_loss(optimizer, scaled, scaled_problems, 5, objective="log-ratio") == \
        pytest.approx(validation_loss(optimizer, plain, problems, 5, objective="log-ratio"))
    assert validation_loss(optimizer, scaled, scaled_problems, 5) > 100 * validation_loss(
        optimizer, plain, problems, 5)


def test_a_schedule_refuses_an_unknown_objective():
    with pytest.raises(ValueError, match="objective"):
        Schedule(objective="mean")
    assert "objective" not in Schedule().to_dict()  # schedules written before it: unchanged


@pytest.mark.parametrize("spec", [
    {"type": "quadratic", "dim": 50},
    {"type": "conditioned-quadratic", "dim": 20, "condition": 100.0},
    {"type": "mixture", "tasks": [{"type": "quadratic", "dim": 3},
                                  {"type": "quadratic", "dim": 50}]},
    {"type": "augmented", "task": {"type": "quadratic", "dim": 50}, "param_scale": [0.5, 2]},
])
def test_held_out_tasks_are_refused_for_meta_training(spec):
    with pytest.raises(SuiteError, match="held-out"):
        meta_train(HNN(), build(spec, "task"), TINY, progress=False)


def test_an_estimator_given_by_spec_trains():
    result = meta_train(HNN(), QuadraticTask(3), TINY, progress=False,
                        estimator={"type": "es", "population": 4, "sigma": 0.01})
    assert math.isfinite(result.best_validation)
    with pytest.raises(ValueError):
        meta_train(HNN(), QuadraticTask(3), TINY, progress=False, estimator={"type": "adam"})


def test_a_custom_estimator_object_is_used():
    class Nothing(GradientEstimator):
        calls = 0

        def trajectory(self, optimizer, task, problems, steps, meta_step):
            Nothing.calls += 1

    optimizer = HNN()
    before = {k: v.clone() for k, v in optimizer.state_dict().items()}
    meta_train(optimizer, QuadraticTask(3), TINY, progress=False, estimator=Nothing())
    assert Nothing.calls == TINY.epochs * TINY.trajectories
    assert all(torch.equal(before[k], v) for k, v in optimizer.state_dict().items())


CONFIG = """
[optimizer]
type = "hnn"

[task]
type = "mixture"

[[task.tasks]]
type = "quadratic"
dim = 3

[[task.tasks]]
type = "augmented"
param_scale = [0.5, 2.0]
task = { type = "quadratic", dim = 5 }

[schedule]
epochs = 1
trajectories = 3
steps = 8
unroll = 4
validation_problems = 2
objective = "log-ratio"

[estimator]
type = "pes"
unroll = 4
population = 4
"""


def test_train_takes_a_mixture_an_objective_and_an_estimator_from_a_config_file(tmp_path):
    from phys_l2o.cli import main
    from phys_l2o.meta import load_checkpoint

    config = tmp_path / "general.toml"
    config.write_text(CONFIG)
    out = tmp_path / "general.pt"
    assert main(["train", "--config", str(config), "--budget", "smoke", "--out", str(out),
                 "--no-progress", "--allow-untrained"]) == 0
    _, record = load_checkpoint(out)
    assert record["estimator"]["type"] == "pes" and record["task"] == "mixture"
    assert record["task_spec"]["tasks"][1]["type"] == "augmented"
    assert record["schedule"]["objective"] == "log-ratio"


def test_train_refuses_a_held_out_task(tmp_path, capsys):
    from phys_l2o.cli import main

    config = tmp_path / "heldout.toml"
    config.write_text('[optimizer]\ntype = "hnn"\n[task]\ntype = "quadratic"\ndim = 50\n')
    assert main(["train", "--config", str(config), "--budget", "smoke",
                 "--out", str(tmp_path / "x.pt"), "--no-progress"]) == 2
    assert "held-out task 'quadratic-50d'" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "x.training.pt").exists()


TINY_SWEEP = """
name = "tiny-general"
reference = "hnn"
default_budget = "test"
test_seed = 0

[train]
type = "mixture"
tasks = ["quadratic", { type = "augmented", task = { type = "quadratic", dim = 4 } }]

[budgets.test]
epochs = 1
trajectories = 2
meta_batch = 2
validation_problems = 2
test_problems = 3
steps = 6
seeds = 1

[targets.q]
task = { type = "quadratic", dim = 4 }
baselines = { adam = { type = "adam", lr = 0.1 } }

[[variants]]
name = "hnn"
optimizer = { type = "hnn" }
objective = "log-ratio"
estimator = { type = "es", population = 2, sigma = 0.01 }
"""


def test_a_sweep_variant_meta_trains_with_its_estimator_and_objective(tmp_path):
    from phys_l2o.cli import main
    from phys_l2o.meta import load_checkpoint

    sweep = tmp_path / "tiny.toml"
    sweep.write_text(TINY_SWEEP)
    out = tmp_path / "run"
    assert main(["sweep", str(sweep), "--out", str(out), "--no-progress"]) == 0
    _, record = load_checkpoint(out / "cells" / "hnn" / "seed-0.pt")
    assert record["estimator"] == {"type": "es", "population": 2, "sigma": 0.01}
    assert record["schedule"]["objective"] == "log-ratio"
    bad = TINY_SWEEP.replace('type = "es", population = 2', 'type = "es", population = 3')
    sweep.write_text(bad)
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "bad")]) == 2


def test_the_generalization_sweep_trains_on_no_held_out_task():
    from phys_l2o.bench import check_not_heldout
    from phys_l2o.experiments.spec import load_sweep

    sweep = load_sweep(Path(phys_l2o.__file__).parent / "sweeps" / "generalization.toml")
    for task in sweep.train["tasks"]:
        check_not_heldout(task["task"])  # each an augmented task: the task it rescales
    assert {v.name for v in sweep.variants} >= {"hnn features", "no dissipation", "mlp", "lstm"}
    assert all("estimator" in v.settings for v in sweep.variants if v.name != "lstm")
