"""Meta-training, evaluation, statistics and checkpoints."""

import numpy as np
import pytest
import torch

from phys_l2o.meta import (
    CheckpointError,
    MetaTrainingDiverged,
    Schedule,
    bootstrap_ci,
    evaluate,
    load_checkpoint,
    meta_train,
    paired_difference,
    rollout,
    save_checkpoint,
    summarize,
)
from phys_l2o.optimizers import HNN, LSTMOptimizer
from phys_l2o.seeding import make_generator
from phys_l2o.tasks import QuadraticTask, select


class Recorder(torch.nn.Module):
    """A learned plain gradient step that records what it is fed."""

    name = "recorder"

    def __init__(self):
        super().__init__()
        self.lr = torch.nn.Parameter(torch.tensor(0.01))
        self.grads = []

    def init_state(self, params, segments):
        return {}

    def step(self, params, grad, state):
        self.grads.append(grad)
        return params - self.lr * grad, state


def test_truncations_include_the_final_partial_one():
    task = QuadraticTask()
    problems = task.sample(2, make_generator(0, "x"))
    opt = Recorder()
    windows = []

    def meta_step(loss):
        windows.append(loss)
        return True

    curve = rollout(opt, task, problems, 10, truncation=4, meta_step=meta_step)
    assert curve.shape == (2, 10)
    assert len(windows) == 3                          # steps 1-4, 5-8 and the partial 9-10
    assert all(w.requires_grad for w in windows)
    assert not any(g.requires_grad for g in opt.grads)  # gradients fed detached
    # the window is the sum over its steps of the mean loss over problems (eq. 3)
    torch.testing.assert_close(windows[2].detach(), curve[:, 8:].mean(0).sum())


def test_rollout_batched_equals_one_at_a_time():
    torch.manual_seed(0)
    task = QuadraticTask()
    problems = task.sample(4, make_generator(1, "x"))
    for opt in (HNN(), LSTMOptimizer()):
        batched = evaluate(opt, task, problems, 30)
        for i in range(4):
            alone = evaluate(opt, task, select(problems, slice(i, i + 1)), 30)
            torch.testing.assert_close(alone, batched[i:i + 1], rtol=1e-5, atol=1e-6)


def tiny_schedule(**kw):
    fields = dict(epochs=3, trajectories=5, meta_batch=4, steps=30, unroll=10, meta_lr=0.01,
                  validation_problems=16)
    fields.update(kw)
    return Schedule(**fields)


def test_meta_training_lowers_validation_loss_of_untrained_hnn():
    torch.manual_seed(0)
    result = meta_train(HNN(), QuadraticTask(), tiny_schedule(), seed=0, progress=False)
    untrained = result.history[0]["validation"]
    assert result.best_epoch > 0
    assert result.best_validation < 0.9 * untrained


def test_meta_train_hands_back_the_best_weights():
    torch.manual_seed(0)
    opt = HNN()
    schedule = tiny_schedule(epochs=4, meta_lr=0.05)
    result = meta_train(opt, QuadraticTask(), schedule, seed=0, progress=False, keep_last=True)
    for k, v in opt.state_dict().items():
        assert torch.equal(v, result.best_state[k])
    assert result.last_state is not None and set(result.last_state) == set(result.best_state)
    # the loaded weights are the ones whose validation loss was recorded as the best
    problems = QuadraticTask().sample(schedule.validation_problems,
                                      make_generator(0, "validation"))
    final = evaluate(opt, QuadraticTask(), problems, schedule.steps)[:, -1]
    assert float(final.mean()) == pytest.approx(result.best_validation, rel=1e-5)


def test_same_seed_same_result():
    def run():
        torch.manual_seed(5)
        opt = LSTMOptimizer()
        result = meta_train(opt, QuadraticTask(), tiny_schedule(epochs=1), seed=2, progress=False)
        return result.history, opt.state_dict()

    (h1, s1), (h2, s2) = run(), run()
    assert [h["validation"] for h in h1] == [h["validation"] for h in h2]
    for k in s1:
        assert torch.equal(s1[k], s2[k])


def test_divergence_is_a_clear_error_that_keeps_the_best_weights():
    torch.manual_seed(0)
    opt = LSTMOptimizer(out_mul=1e30)
    with pytest.raises(MetaTrainingDiverged, match="Lower the meta learning rate") as info:
        meta_train(opt, QuadraticTask(), tiny_schedule(epochs=2), progress=False)
    assert info.value.result.best_epoch == 0


def test_schedule_rejects_bad_values():
    with pytest.raises(ValueError, match="unroll"):
        Schedule(unroll=0)
    with pytest.raises(ValueError, match="meta_lr"):
        Schedule(meta_lr=-1.0)
    for bad in (True, 1.5, "3"):
        with pytest.raises(ValueError, match="epochs"):
            Schedule(epochs=bad)
    with pytest.raises(ValueError, match="meta_lr"):
        Schedule(meta_lr="0.1")


def test_bootstrap_interval_and_summary():
    values = np.random.default_rng(0).exponential(size=200)
    lo, hi = bootstrap_ci(values)
    assert lo < values.mean() < hi
    assert (lo, hi) == bootstrap_ci(values)
    # the interval shrinks like 1/sqrt(n)
    lo4, hi4 = bootstrap_ci(np.tile(values, 16))
    assert 2.5 < (hi - lo) / (hi4 - lo4) < 6
    summary = summarize(np.array([1.0, 2.0, np.inf]))
    assert summary["diverged"] == 1 and summary["median"] == 2.0


def test_intervals_resample_the_seeds_too():
    rng = np.random.default_rng(1)
    problems = rng.exponential(size=100)
    agree = np.stack([problems, problems * 1.01, problems * 0.99])
    disagree = np.stack([problems, problems + 1.0, problems + 2.0])
    lo, hi = bootstrap_ci(agree)
    dlo, dhi = bootstrap_ci(disagree)
    assert dlo < disagree.mean() < dhi
    # seeds that disagree widen the interval beyond what the problems alone give
    assert (dhi - dlo) > 2 * (hi - lo)
    s = summarize(disagree)
    assert s["seed_means"] == pytest.approx([problems.mean() + k for k in range(3)])
    assert s["median"] == pytest.approx(np.median(problems + 1.0))
    # one seed is the problems' bootstrap; a (problems,) array is one seed
    assert bootstrap_ci(problems) == bootstrap_ci(problems[None])
    # a paired difference shares the problems: a constant shift has a tight interval
    diff = paired_difference(problems[None] + 0.5, problems)
    assert diff["mean"] == pytest.approx(0.5)
    assert diff["ci95"] == pytest.approx([0.5, 0.5])
    # ... while the seeds of each method are resampled on their own
    wide = paired_difference(disagree, problems)
    assert wide["ci95"][0] < 1.0 < wide["ci95"][1] and wide["ci95"][1] - wide["ci95"][0] > 1
    with pytest.raises(ValueError, match="same problems"):
        paired_difference(agree, problems[:50])


def test_checkpoint_roundtrip_and_errors(tmp_path):
    torch.manual_seed(0)
    opt = HNN(preprocessing=True, normalize=False, out_mul=0.002)
    path = tmp_path / "hnn.pt"
    save_checkpoint(path, opt, task="quadratic")
    loaded, meta = load_checkpoint(path)
    assert meta == {"task": "quadratic"} and loaded.out_mul == 0.002
    for k, v in opt.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_checkpoints_of_the_first_format_still_load(tmp_path):
    """Format 1 held a registered name and the constructor config (read-outs as integrators)."""
    torch.manual_seed(0)
    new = HNN(readout={"type": "flow-readout", "flow": {"type": "rk4", "horizon": 0.5}})
    old_state = {k.replace("readout.", "integrator.", 1): v for k, v in new.state_dict().items()}
    torch.save({"format": "phys-l2o-checkpoint/1", "name": "hnn",
                "config": {"preprocessing": False, "integrator": "rk4",
                           "integrator_options": {"horizon": 0.5}, "out_mul": 0.001,
                           "normalize": True},
                "state_dict": old_state, "metadata": {"seed": 0}}, tmp_path / "old.pt")
    loaded, meta = load_checkpoint(tmp_path / "old.pt")
    assert meta == {"seed": 0} and loaded.spec() == new.spec()
    for k, v in new.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_loading_a_checkpoint_leaves_the_random_state_alone(tmp_path):
    save_checkpoint(tmp_path / "hnn.pt", HNN())
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    load_checkpoint(tmp_path / "hnn.pt")
    assert torch.equal(torch.rand(3), expected)
