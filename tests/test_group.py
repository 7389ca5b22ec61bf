"""Many optimizers as one program: a ``Stacked`` optimizer steps like its members, a group of
seeds meta-trains like its members alone (and resumes), and a sweep's grouped cells write
the records of separate cells."""

from __future__ import annotations

import json
import math

import pytest
import torch

from phys_l2o import build
from phys_l2o.experiments.runner import run_sweep
from phys_l2o.experiments.spec import SweepError
from phys_l2o.experiments.training import build_seeded
from phys_l2o.meta import Schedule, evaluate, meta_train
from phys_l2o.meta.estimators import truncated_rollout
from phys_l2o.meta.group import GroupMetaStep, meta_train_group, stack_problems
from phys_l2o.meta.state import TrainState, untrained_result
from phys_l2o.optimizers import Stacked
from phys_l2o.optimizers.base import compile_available
from phys_l2o.tasks import QuadraticTask

SPECS = {"hnn": {"type": "hnn"}, "lstm": {"type": "lstm", "out_mul": 0.1},
         "hnn-features": {"type": "hnn", "features": True, "normalize": False},
         # a flow of several field evaluations, and a potential whose gradient is written out
         "hnn-rk4": {"type": "hnn", "readout": {"type": "flow-readout", "flow": "rk4"}},
         "hnn-scalar-potential": {"type": "hnn", "field": {
             "type": "paper-field", "potential": "scalar-potential-mlp"}}}


def members(spec: dict, seeds=(0, 1, 2)) -> list:
    return [build_seeded(spec, seed, "init") for seed in seeds]


@pytest.mark.parametrize("name", list(SPECS))
def test_a_stack_steps_each_member_as_it_steps_alone(name):
    task, optimizers = QuadraticTask(), members(SPECS[name])
    assert Stacked.vectorizable(optimizers[0])
    problems = task.sample(4, torch.Generator().manual_seed(0))
    together = evaluate(Stacked(optimizers), task, stack_problems([problems] * 3), 20)
    assert together.shape == (12, 20)
    for m, optimizer in enumerate(optimizers):
        alone = evaluate(optimizer, task, problems, 20)
        torch.testing.assert_close(together[4 * m:4 * m + 4], alone, rtol=1e-5, atol=1e-6)
    # members really differ: the same problems give other losses
    assert not torch.allclose(together[:4], together[4:8])


@pytest.mark.skipif(not compile_available(), reason="torch.compile needs a C++ compiler")
def test_a_compiled_stack_steps_and_trains_as_the_eager_one():
    task = QuadraticTask()
    problems = stack_problems([task.sample(2, torch.Generator().manual_seed(0))] * 3)
    eager, compiled = Stacked(members(SPECS["hnn"])), Stacked(members(SPECS["hnn"]))
    runner = compiled.compiled()
    torch.testing.assert_close(evaluate(runner, task, problems, 12),
                               evaluate(eager, task, problems, 12), rtol=1e-5, atol=1e-6)
    for stack, run in ((eager, eager), (compiled, runner)):  # one truncation, one meta-step
        meta = torch.optim.Adam(stack.parameters(), lr=0.01)
        truncated_rollout(run, task, problems, 8, 4, lambda loss, meta=meta: (
            meta.zero_grad(), loss.sum().backward(), meta.step()) and True, members=3)
    for a, b in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_a_stack_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="share one spec"):
        Stacked([build({"type": "hnn"}, "optimizer"),
                 build({"type": "hnn", "normalize": False}, "optimizer")])
    with pytest.raises(ValueError, match="at least one member"):
        Stacked([])
    stacked = Stacked(members(SPECS["hnn"]))
    with pytest.raises(ValueError, match=r"\(members \* batch, coords\)"):
        stacked.init_state(torch.zeros(4, 10), (10,))
    template = build({"type": "hnn"}, "optimizer")
    with pytest.raises(ValueError, match="weights must be"):
        Stacked.with_weights(template, {"nope": torch.zeros(2, 3)})
    assert Stacked.vectorizable(template)
    # an adaptive step size inside the step: vmap cannot run it, a stack loops over its members
    adaptive = build({"type": "hnn", "readout": {"type": "flow-readout", "flow": "dopri5"}},
                   "optimizer")
    assert not Stacked.vectorizable(adaptive)
    looped = Stacked([adaptive, build(adaptive.spec(), "optimizer")])
    task = QuadraticTask()
    problems = task.sample(2, torch.Generator().manual_seed(0))
    with pytest.warns(RuntimeWarning, match="one by one"):
        losses = evaluate(looped, task, stack_problems([problems] * 2), 3)
    torch.testing.assert_close(losses[:2], evaluate(adaptive, task, problems, 3))


SCHEDULE = Schedule(epochs=2, trajectories=3, steps=20, unroll=7, validation_problems=5,
                    meta_lr=0.01)


@pytest.mark.parametrize("name", ["hnn", "lstm"])
def test_a_group_meta_trains_each_member_as_it_trains_alone(name):
    task, seeds = QuadraticTask(), [0, 1, 2]
    alone = members(SPECS[name], seeds)
    results = [meta_train(o, task, SCHEDULE, seed=s, progress=False)
               for o, s in zip(alone, seeds)]
    grouped = members(SPECS[name], seeds)
    outcomes = meta_train_group(grouped, task, SCHEDULE, seeds=seeds)
    for one, mine, theirs, ours in zip(alone, grouped, results, outcomes):
        assert [h["epoch"] for h in ours.history] == [0, 1, 2]
        assert [h["validation"] for h in ours.history] == pytest.approx(
            [h["validation"] for h in theirs.history], rel=1e-4)
        assert (ours.best_epoch, ours.skipped_updates) == (theirs.best_epoch,
                                                           theirs.skipped_updates)
        for a, b in zip(one.parameters(), mine.parameters()):  # both hold their best weights
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_a_group_resumes_each_member_exactly(tmp_path):
    task, seeds = QuadraticTask(), [3, 4]
    paths = [tmp_path / f"{s}.pt" for s in seeds]
    whole = members(SPECS["hnn"], seeds)
    meta_train_group(whole, task, SCHEDULE, seeds=seeds)
    first = members(SPECS["hnn"], seeds)
    meta_train_group(first, task, Schedule(**{**SCHEDULE.to_dict(), "epochs": 1}), seeds=seeds,
                     state_paths=paths)
    assert all(p.is_file() for p in paths)
    resumed = members(SPECS["hnn"], seeds)
    outcomes = meta_train_group(resumed, task, SCHEDULE, seeds=seeds, state_paths=paths,
                                resume=True)
    assert [len(r.history) for r in outcomes] == [3, 3]
    for a, b in zip(whole, resumed):
        for x, y in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_a_member_with_a_non_finite_meta_loss_skips_alone():
    optimizers = members(SPECS["hnn"], [0, 1])
    states = [TrainState(o, torch.optim.Adam(o.parameters(), lr=0.1), torch.Generator(), 0,
                         untrained_result(o)) for o in optimizers]
    before = [[p.detach().clone() for p in o.parameters()] for o in optimizers]
    stacked = Stacked(optimizers)
    weights = stacked.weights()
    losses = sum(w.flatten(1).sum(1) for w in weights.values())      # (members,), each its own
    losses = torch.stack([losses[0], losses[1] + math.inf])
    step = GroupMetaStep(states)
    assert step.loss(losses) is True
    assert step.active == [True, False]
    assert [s.result.skipped_updates for s in states] == [0, 1]
    moved = [any(not torch.equal(p, q) for p, q in zip(o.parameters(), b))
             for o, b in zip(optimizers, before)]
    assert moved == [True, False]


def test_a_grouped_sweep_writes_the_records_of_separate_cells(tmp_path, capsys):
    from test_sweep import TINY, finals, finals_only

    path = tmp_path / "tiny.toml"
    path.write_text(TINY.replace("seeds = 2\n\n[budgets.other]", "seeds = 3\n\n[budgets.other]"))
    grouped = run_sweep(path, out=tmp_path / "grouped", device="cpu", progress=False,
                        workers=1)
    assert "2 groups of seeds meta-trained together" in capsys.readouterr().out
    alone = run_sweep(path, out=tmp_path / "alone", device="cpu", progress=False, workers=1,
                      group=False)
    ours, theirs = (finals_only(finals(tmp_path / d)) for d in ("grouped", "alone"))
    assert ours.keys() == theirs.keys() and len(ours) == 8
    for key in ours:
        for label, (final, curve) in ours[key].items():
            assert final == pytest.approx(theirs[key][label][0], rel=1e-4)
            assert curve == pytest.approx(theirs[key][label][1], rel=1e-4)
    record = json.loads((tmp_path / "grouped" / "cells" / "hnn" / "seed-1.json").read_text())
    assert record["group"]["seeds"] == [0, 1, 2] and record["seed"] == 1
    separate = json.loads((tmp_path / "alone" / "cells" / "hnn" / "seed-1.json").read_text())
    assert "group" not in separate
    assert record["meta_training"]["validation"] == pytest.approx(
        separate["meta_training"]["validation"], rel=1e-4)
    assert grouped["targets"].keys() == alone["targets"].keys()


def test_the_ray_engine_writes_the_records_of_the_local_engine(tmp_path, capsys):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")
    from test_sweep import TINY, finals, finals_only

    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    local = run_sweep(path, out=tmp_path / "local", device="cpu", progress=False, workers=1)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    try:
        report = run_sweep(path, out=tmp_path / "ray", device="cpu", progress=False,
                           engine="ray")
        assert report["engine"] == "ray" and local["engine"] == "local"
        assert finals_only(finals(tmp_path / "ray")) == finals_only(finals(tmp_path / "local"))
        # the same call resumes from the folder: nothing runs again
        again = run_sweep(path, out=tmp_path / "ray", device="cpu", progress=False,
                          engine="ray")
        assert again["reused_cells"] == 6
    finally:
        ray.shutdown()
    with pytest.raises(SweepError, match="engine must be one of"):
        run_sweep(path, out=tmp_path / "bad", engine="slurm")
    with pytest.raises(SweepError, match="with engine 'ray'"):
        run_sweep(path, out=tmp_path / "bad", address="auto")


def test_a_group_whose_side_by_side_evaluation_cannot_fit_is_refused(tmp_path, monkeypatch):
    import importlib

    from test_sweep import TINY

    from phys_l2o.experiments.cells import Runner
    from phys_l2o.experiments.plan import make_plan
    from phys_l2o.experiments.spec import Cell, load_sweep

    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    plan = make_plan(load_sweep(path), None, out=tmp_path / "run")
    module = importlib.import_module("phys_l2o.meta.evaluate")
    # 8 quadratic test problems need 8 x 640 bytes: one seed's fit, three seeds' do not
    monkeypatch.setattr(module, "available_memory", lambda: 10_000)
    runner = Runner(plan, device=torch.device("cpu"))
    with pytest.raises(ValueError, match=r"24 test problems \(3 seeds side by side\).*"
                                         r"--no-group"):
        runner.run((Cell("hnn", 0), Cell("hnn", 1), Cell("hnn", 2)))
