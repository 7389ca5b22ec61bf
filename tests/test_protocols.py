"""The two protocols: each switch of ``reference`` does what the original code does, and the
runner applies them (``phys_l2o.experiments.protocols``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from phys_l2o import build
from phys_l2o.experiments.plan import make_plan
from phys_l2o.experiments.protocols import reported_index, variant_under
from phys_l2o.experiments.runner import run_sweep
from phys_l2o.experiments.spec import Sweep, SweepError
from phys_l2o.experiments.training import build_seeded
from phys_l2o.meta import Schedule, meta_train
from phys_l2o.meta import state as state_module
from phys_l2o.meta.estimators import truncated_rollout
from phys_l2o.meta.rollout import rollout
from phys_l2o.tasks.quadratic import QuadraticTask

#: the weights of the paper's MNIST HNN that act on the parameters only through q_dot.
THROUGH_Q_DOT = ("field.inverse_inertia.", "field.control.", "readout.q_dot_head.")


def meta_gradients(optimizer, task, problems, steps, **kwargs) -> dict[str, torch.Tensor]:
    """The meta-gradient of one truncation of ``steps`` steps."""
    out = {}

    def meta_step(loss):
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        out.update({k: torch.zeros_like(v) if v.grad is None else v.grad.clone()
                    for k, v in optimizer.named_parameters()})
        return False

    truncated_rollout(optimizer, task, problems, steps, steps, meta_step, **kwargs)
    return out


@pytest.fixture
def quadratic():
    task = QuadraticTask()
    return task, task.sample(1, torch.Generator().manual_seed(3))


def test_detach_q_dot_starves_the_23_weights_behind_q_dot(quadratic):
    """D1: with q_dot read without its graph, the inverse inertia, the control and the q_dot
    head (23 of the 55 weights) receive no meta-gradient; every other weight still does."""
    task, problems = quadratic
    spec = {"type": "hnn", "preprocessing": True, "normalize": False}
    cut = meta_gradients(build_seeded({**spec, "detach_q_dot": True}, 0, "init"), task,
                         problems, 15)
    full = meta_gradients(build_seeded(spec, 0, "init"), task, problems, 15)
    starved = {k for k in cut if k.startswith(THROUGH_Q_DOT)}
    assert sum(cut[k].numel() for k in starved) == 23
    assert all(torch.count_nonzero(cut[k]) == 0 for k in starved)
    # (the inertia's bias is counted but unused, as in the original)
    assert all(torch.count_nonzero(full[k]) > 0 for k in starved
               if k != "field.inverse_inertia.factor.bias")
    assert all(torch.count_nonzero(cut[k]) > 0 for k in set(cut) - starved)


def test_detach_q_dot_does_not_change_the_steps(quadratic):
    task, problems = quadratic
    spec = {"type": "hnn", "preprocessing": True}
    curves = [rollout(build_seeded({**spec, "detach_q_dot": d}, 0, "init"), task, problems, 30)
              for d in (False, True)]
    torch.testing.assert_close(curves[0], curves[1], rtol=0, atol=0)


def original_lstm_truncation(optimizer, task, problems, steps) -> dict[str, torch.Tensor]:
    """One truncation as the original code runs its quadratic LSTM: leaf parameters whose
    ``p.grad`` comes from ``loss.backward(retain_graph=True)`` at every step and is handed to
    the LSTM through ``.data`` (sharing its memory), the losses computed before each update
    summed into the meta-loss."""
    coords = task.num_coords
    theta = task.init_params(problems).detach().requires_grad_(True)
    hs = [torch.zeros(coords, optimizer.hidden) for _ in optimizer.cells]
    cs = [torch.zeros(coords, optimizer.hidden) for _ in optimizer.cells]
    p, losses = theta, []
    for t in range(steps):
        loss = task.loss(p, problems, t).sum()
        loss.backward(retain_graph=True)
        x = p.grad.data.view(coords, 1).requires_grad_(True)
        new_h, new_c = [], []
        for cell, h, c in zip(optimizer.cells, hs, cs):
            h, c = cell(x, (h, c))
            new_h.append(h)
            new_c.append(c)
            x = h
        hs, cs = new_h, new_c
        following = p + optimizer.out_mul * optimizer.head(x).view(1, coords)
        following.retain_grad()
        losses.append(loss)
        p = following
    optimizer.zero_grad(set_to_none=False)
    sum(losses).backward()
    return {k: v.grad.clone() for k, v in optimizer.named_parameters()}


def test_alias_grad_and_the_shifted_window_give_the_original_meta_gradient(quadratic):
    """D6 and D3 together: the meta-gradient equals the original's, whose first layer's input
    weights receive an inflated gradient; without alias_grad they do not."""
    task, problems = quadratic
    steps = 20
    lstm = build_seeded({"type": "lstm"}, 0, "init")
    original = original_lstm_truncation(lstm, task, problems, steps)
    aliased = build_seeded({"type": "lstm", "alias_grad": True}, 0, "init")
    ours = meta_gradients(aliased, task, problems, steps, window="before")
    for name, grad in original.items():  # to float rounding (another order of summation)
        torch.testing.assert_close(ours[name], grad, rtol=1e-4, atol=1e-6)
    clean = meta_gradients(lstm, task, problems, steps, window="before")
    ratio = original["cells.0.weight_ih"].norm() / clean["cells.0.weight_ih"].norm()
    assert ratio > 2  # the inflation the original's aliasing causes (3.0x here)
    for name in ("cells.0.weight_hh", "cells.1.weight_ih", "head.weight"):
        torch.testing.assert_close(clean[name], original[name], rtol=1e-4, atol=1e-6)


def test_alias_grad_changes_nothing_with_preprocessing_or_in_evaluation(quadratic):
    task, problems = quadratic
    spec = {"type": "lstm", "preprocessing": True}
    plain = build_seeded(spec, 0, "init")
    aliased = build_seeded({**spec, "alias_grad": True}, 0, "init")
    a = meta_gradients(plain, task, problems, 20)
    b = meta_gradients(aliased, task, problems, 20)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(rollout(plain, task, problems, 30),
                                   rollout(aliased, task, problems, 30), rtol=0, atol=0)
    assert aliased.uncompilable_pieces() == ["LSTMOptimizer"]
    assert plain.uncompilable_pieces() == []


def test_the_window_before_sums_the_losses_before_each_update(quadratic):
    """D3: a truncation of T steps sums F(theta_k) .. F(theta_{k+T-1})."""
    task, problems = quadratic
    hnn = build_seeded({"type": "hnn"}, 0, "init")
    seen = {"after": [], "before": []}
    curves = {}
    for window in seen:
        def meta_step(loss, window=window):
            seen[window].append(float(loss.detach()))
            return True

        with torch.no_grad():  # the values only
            first = float(task.loss(task.init_params(problems), problems, 0))
        curves[window] = truncated_rollout(hnn, task, problems, 40, 15, meta_step,
                                           window=window)[0]
    torch.testing.assert_close(curves["after"], curves["before"])  # the same steps
    curve = curves["after"].double()
    losses = torch.cat([torch.tensor([first], dtype=torch.double), curve])  # F(theta_0..40)
    after = [float(curve[a:b].sum()) for a, b in ((0, 15), (15, 30), (30, 40))]
    before = [float(losses[a:b].sum()) for a, b in ((0, 15), (15, 30), (30, 40))]
    np.testing.assert_allclose(seen["after"], after, rtol=1e-5)
    np.testing.assert_allclose(seen["before"], before, rtol=1e-5)


def test_validation_pool_validates_on_the_other_pool(monkeypatch, quadratic):
    """D5: with validation_pool the validation problems come from that pool of the task."""
    task, _ = quadratic
    pools = []

    class Pooled(QuadraticTask):
        def with_pool(self, pool):
            pools.append(pool)
            return super().with_pool(pool)

    schedule = Schedule(epochs=1, trajectories=1, steps=5, unroll=5, validation_problems=2)
    meta_train(build_seeded({"type": "hnn"}, 0, "init"), Pooled(), schedule, progress=False)
    assert pools == []
    meta_train(build_seeded({"type": "hnn"}, 0, "init"), Pooled(),
               Schedule(**{**schedule.to_dict(), "validation_pool": "test"}), progress=False)
    assert pools == ["test"]
    with pytest.raises(ValueError, match="validation_pool"):
        Schedule(validation_pool="dev")
    with pytest.raises(ValueError, match="loss_window"):
        Schedule(loss_window="middle")


def test_mnist_with_pool_draws_from_the_test_pool(mnist_test_only_root):
    from phys_l2o.tasks.mnist import split_pools

    task = build({"type": "mnist", "pool": "train", "download": False,
                  "data_root": str(mnist_test_only_root)}, "task")
    test = task.with_pool("test")
    _, test_pool = split_pools(len(task._digits[task.device]))
    assert test.pool == "test" and torch.equal(test.pool_indices, test_pool)
    assert task.pool == "train"  # the original is left as it was
    problems = test.sample(2, torch.Generator().manual_seed(0))
    assert set(problems["batches"].flatten().tolist()) <= set(test_pool.tolist())


def test_reference_sets_each_switch_where_the_original_differs():
    hnn = {"type": "hnn", "preprocessing": True}
    spec, settings = variant_under("reference", hnn, {"unroll": 15})
    assert spec["detach_q_dot"] is True
    assert settings == {"unroll": 15, "loss_window": "before", "validation_pool": "test"}
    spec, _ = variant_under("reference", {"type": "hnn"}, {})
    assert "detach_q_dot" not in spec  # without preprocessing the original's q_dot flows
    spec, settings = variant_under("reference", {"type": "lstm"}, {})
    assert spec["alias_grad"] is True and settings["test_out_mul"] == 1.0
    spec, settings = variant_under("reference", {"type": "lstm", "preprocessing": True}, {})
    assert "alias_grad" not in spec and settings["test_out_mul"] == 1.0
    assert variant_under("corrected", hnn, {"unroll": 15}) == (hnn, {"unroll": 15})
    with pytest.raises(ValueError, match="unknown protocol"):
        variant_under("original", hnn, {})
    assert reported_index("last") == -1 and reported_index("before-last") == -2


def tiny_sweep(**extra) -> Sweep:
    return Sweep.from_dict({
        "name": "tiny", "train": {"type": "quadratic"}, "reference": "hnn",
        "budgets": {"test": {"epochs": 2, "trajectories": 2, "meta_batch": 1,
                             "validation_problems": 3, "test_problems": 5, "steps": 12,
                             "seeds": 1}},
        "targets": {"quadratic": {"task": {"type": "quadratic"},
                                  "baselines": {"adam": {"type": "adam", "lr": 0.1}}},
                    "wide": {"task": {"type": "quadratic", "dim": 20}}},
        "variants": [{"name": "hnn", "optimizer": {"type": "hnn"}, "unroll": 5},
                     {"name": "lstm", "optimizer": {"type": "lstm", "out_mul": 0.1},
                      "unroll": 5}],
        **extra})


def test_a_reference_run_records_its_protocol_and_the_loss_before_the_last_update(tmp_path):
    sweep = tiny_sweep(monitor=["wide"])
    report = run_sweep(sweep, out=tmp_path / "ref", protocol="reference", progress=False)
    cells = tmp_path / "ref" / "cells"
    adam = json.loads((cells / "adam" / "baseline.json").read_text())
    target = adam["targets"]["quadratic"]
    assert adam["protocol"] == "reference" and adam["reported_loss"] == "before-last"
    assert math.isclose(np.mean(target["final"]), target["curve"][-2], rel_tol=1e-9)
    lstm = json.loads((cells / "lstm" / "seed-0.json").read_text())
    assert lstm["spec"]["alias_grad"] is True and lstm["test_out_mul"] == 1.0
    assert lstm["schedule"]["loss_window"] == "before" and not lstm["compiled"]
    # the watched target: its validation per epoch, and the oracle's row in the report
    watched = lstm["meta_training"]["monitors"]["wide"]
    assert len(watched["validation"]) == 3 and 0 <= watched["best_epoch"] <= 2
    assert lstm["targets"]["wide"]["oracle"]["epoch"] == watched["best_epoch"]
    assert "hnn (oracle epoch)" in report["targets"]["wide"]
    assert "hnn (oracle epoch)" not in report["targets"]["quadratic"]
    assert report["protocol"] == "reference" and len(report["transfer"]) == 2
    text = (tmp_path / "ref" / "results.md").read_text()
    assert "Protocol `reference`" in text and "HNN (oracle epoch)" in text
    assert (tmp_path / "ref" / "transfer.png").stat().st_size > 0
    # the same folder refuses the other protocol
    plan = make_plan(sweep, out=tmp_path / "ref")
    with pytest.raises(SweepError, match="'reference' protocol"):
        plan.folder.check(plan.manifest())
    corrected = run_sweep(sweep, out=tmp_path / "corr", progress=False)
    other = json.loads((tmp_path / "corr" / "cells" / "adam" / "baseline.json").read_text())
    np.testing.assert_allclose(other["targets"]["quadratic"]["curve"], target["curve"])
    assert math.isclose(np.mean(other["targets"]["quadratic"]["final"]),
                        target["curve"][-1], rel_tol=1e-9)
    assert corrected["targets"]["quadratic"]["lstm"]["final_loss"]["mean"] != \
        report["targets"]["quadratic"]["lstm"]["final_loss"]["mean"]


def test_test_out_mul_and_reported_loss_are_switches_of_their_own(tmp_path):
    """An ablation turns one difference on alone: the sweep key and the variant key."""
    data = tiny_sweep(reported_loss="before-last").to_dict()
    data.pop("reference")
    sweep = Sweep.from_dict({**data, "variants": [
        {"name": "lstm", "optimizer": {"type": "lstm", "out_mul": 0.1}, "unroll": 5,
         "test_out_mul": 1.0}]})
    run_sweep(sweep, out=tmp_path, progress=False)
    lstm = json.loads((tmp_path / "cells" / "lstm" / "seed-0.json").read_text())
    assert lstm["protocol"] == "corrected" and lstm["reported_loss"] == "before-last"
    assert lstm["test_out_mul"] == 1.0 and "alias_grad" not in lstm["spec"]
    with pytest.raises(SweepError, match="reported_loss"):
        tiny_sweep(reported_loss="best")
    with pytest.raises(SweepError, match="out_mul"):
        Sweep.from_dict({**sweep.to_dict(), "variants": [
            {"name": "lstm", "optimizer": {"type": "lstm"}, "test_out_mul": -1}]})
    with pytest.raises(SweepError, match="monitor"):
        tiny_sweep(monitor=["relu"])


def test_max_seeds_limits_a_costly_variant(tmp_path):
    sweep = tiny_sweep()
    plan = make_plan(sweep, out=tmp_path, seeds=3, max_seeds={"lstm": 1})
    assert [str(c) for c in sweep.cells(plan.seeds, plan.max_seeds)] == [
        "hnn (seed 0)", "hnn (seed 1)", "hnn (seed 2)", "lstm (seed 0)", "adam"]
    with pytest.raises(SweepError, match="not a variant"):
        make_plan(sweep, out=tmp_path, max_seeds={"adam": 1})


def test_monitors_are_kept_across_a_resume(tmp_path, quadratic):
    """The watched task's history and best weights survive a killed run."""
    task, _ = quadratic
    schedule = Schedule(epochs=3, trajectories=1, steps=8, unroll=4, validation_problems=2)
    watch = {"wide": QuadraticTask(dim=20)}
    whole = meta_train(build_seeded({"type": "hnn"}, 0, "init"), task, schedule,
                       progress=False, monitors=watch)
    state = tmp_path / "state.pt"
    short = Schedule(**{**schedule.to_dict(), "epochs": 2})
    meta_train(build_seeded({"type": "hnn"}, 0, "init"), task, short, progress=False,
               monitors=watch, state_path=state)
    resumed = meta_train(build_seeded({"type": "hnn"}, 0, "init"), task, schedule,
                         progress=False, monitors=watch, state_path=state, resume=True)
    assert [h["monitors"]["wide"] for h in resumed.history] == \
        [h["monitors"]["wide"] for h in whole.history]
    assert resumed.monitors["wide"]["epoch"] == whole.monitors["wide"]["epoch"]
    for key, value in whole.monitors["wide"]["state"].items():
        torch.testing.assert_close(resumed.monitors["wide"]["state"][key], value)


def test_a_training_state_from_before_the_new_fields_resumes(tmp_path, quadratic, monkeypatch):
    task, _ = quadratic
    schedule = Schedule(epochs=2, trajectories=1, steps=8, unroll=4, validation_problems=2)
    state = tmp_path / "state.pt"
    short = Schedule(**{**schedule.to_dict(), "epochs": 1})
    meta_train(build_seeded({"type": "hnn"}, 0, "init"), task, short, progress=False,
               state_path=state)
    saved = torch.load(state, weights_only=True)
    for key in ("loss_window", "validation_pool"):
        saved["schedule"].pop(key, None)
    torch.save(saved, state)
    result = meta_train(build_seeded({"type": "hnn"}, 0, "init"), task, schedule,
                        progress=False, state_path=state, resume=True)
    assert len(result.history) == 3
    assert state_module.STATE_FORMAT == saved["format"]


def test_train_with_the_reference_protocol(tmp_path):
    from phys_l2o.cli import main
    from phys_l2o.meta import load_checkpoint

    out = tmp_path / "lstm.pt"
    assert main(["train", "--optimizer", "lstm", "--budget", "smoke", "--protocol", "reference",
                 "--no-progress", "--allow-untrained", "--out", str(out)]) == 0
    optimizer, info = load_checkpoint(out)
    assert optimizer.alias_grad is True and info["protocol"] == "reference"
    assert info["schedule"]["loss_window"] == "before"
    with pytest.raises(SystemExit):
        main(["train", "--protocol", "original", "--out", str(tmp_path / "x.pt")])
