"""Meta-training, evaluation, statistics and checkpoints."""

import re

import numpy as np
import pytest
import torch

from phys_l2o.meta import (
    Callback,
    CheckpointError,
    GradientEstimator,
    MetaTrainer,
    MetaTrainingDiverged,
    MetaTrainingInterrupted,
    Schedule,
    bootstrap_ci,
    evaluate,
    load_checkpoint,
    meta_train,
    paired_difference,
    save_checkpoint,
    seed_comparison,
    summarize,
)
from phys_l2o.meta.estimators import truncated_rollout
from phys_l2o.meta.stats import smallest_p
from phys_l2o.optimizers import HNN, LSTMOptimizer
from phys_l2o.optimizers.base import CompiledOptimizer
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

    curve = truncated_rollout(opt, task, problems, 10, 4, meta_step)
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


def plain_truncated_bptt(opt, task, schedule, seed):
    """Meta-training written out as one loop: the weights after ``schedule.epochs`` epochs."""
    meta_opt = torch.optim.Adam(opt.parameters(), lr=schedule.meta_lr)
    gen = make_generator(seed, "meta-train")
    for _ in range(schedule.epochs * schedule.trajectories):
        problems = task.sample(schedule.meta_batch, gen)
        params = task.init_params(problems)
        state = opt.init_state(params, task.segments)
        loss, grad = task.loss_and_grad(params, problems, 0)
        total = None
        for t in range(1, schedule.steps + 1):
            update, state = opt.step(params, grad, state)
            params = params + opt.step_scale * update
            loss, grad = task.loss_and_grad(params, problems, t)
            total = loss.mean() if total is None else total + loss.mean()
            if t % schedule.unroll == 0 or t == schedule.steps:
                meta_opt.zero_grad(set_to_none=True)
                total.backward()
                meta_opt.step()
                total = None
                params, loss = params.detach(), loss.detach()
                state = type(state)(*(v.detach() if isinstance(v, torch.Tensor) else v
                                      for v in state))
    return opt.state_dict()


def test_the_loop_is_plain_truncated_backprop_bit_for_bit():
    task, schedule = QuadraticTask(), tiny_schedule(epochs=2, trajectories=2, meta_batch=2,
                                                     steps=12, unroll=5, validation_problems=3)
    torch.manual_seed(0)
    result = meta_train(HNN(), task, schedule, seed=4, progress=False, keep_last=True)
    torch.manual_seed(0)
    expected = plain_truncated_bptt(HNN(), task, schedule, seed=4)
    for k, v in expected.items():
        assert torch.equal(result.last_state[k], v), k


def weights_equal(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_an_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path,
                                                                           monkeypatch):
    task, schedule = QuadraticTask(), tiny_schedule(epochs=4, trajectories=2, meta_batch=2,
                                                     steps=12, unroll=5, validation_problems=3)
    torch.manual_seed(1)
    straight = meta_train(LSTMOptimizer(), task, schedule, seed=2, progress=False,
                          keep_last=True)
    real_epoch = MetaTrainer.epoch

    def ctrl_c_in_epoch_3(self, state):
        if state.epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(self, state)

    path = tmp_path / "run.training.pt"
    torch.manual_seed(1)
    opt = LSTMOptimizer()
    with monkeypatch.context() as patch:
        patch.setattr(MetaTrainer, "epoch", ctrl_c_in_epoch_3)
        with pytest.raises(MetaTrainingInterrupted) as info:
            meta_train(opt, task, schedule, seed=2, progress=False, state_path=path)
    assert info.value.epoch == 2 and info.value.state_path == path
    assert weights_equal(opt.state_dict(), info.value.result.best_state)
    # a state of another task, seed or schedule is refused, naming what differs
    from phys_l2o.meta import CheckpointError

    for other, kwargs, differs in [
            (QuadraticTask(dim=5), {}, "(this run: {'type': 'quadratic', 'dim': 5"),
            (task, {"seed": 3}, "seed 2 (this run: 3)"),
            (task, {"schedule": tiny_schedule(epochs=4, trajectories=2, meta_batch=2, steps=12,
                                              unroll=4, validation_problems=3)},
             "unroll 5 (this run: 4)")]:
        options = {"seed": 2, "schedule": schedule, **kwargs}
        with pytest.raises(CheckpointError, match=re.escape(differs)):
            meta_train(opt, other, options.pop("schedule"), progress=False, state_path=path,
                       resume=True, **options)
    resumed = meta_train(opt, task, schedule, seed=2, progress=False, keep_last=True,
                         state_path=path, resume=True)
    assert weights_equal(resumed.last_state, straight.last_state)
    assert weights_equal(resumed.best_state, straight.best_state)
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history] == \
        [{k: v for k, v in h.items() if k != "seconds"} for h in straight.history]


def test_a_training_state_round_trips_through_torch_save(tmp_path):
    task, schedule = QuadraticTask(), tiny_schedule(epochs=3, trajectories=2, meta_batch=2,
                                                     steps=12, unroll=5, validation_problems=3)
    torch.manual_seed(0)
    trainer = MetaTrainer(LSTMOptimizer(), task, schedule, seed=1)
    state = trainer.epoch(trainer.init())
    torch.save(state.to_payload(schedule=schedule, seed=1), tmp_path / "state.pt")
    payload = torch.load(tmp_path / "state.pt", weights_only=True)
    assert payload["epoch"] == 1 and len(payload["result"]["history"]) == 2
    torch.manual_seed(5)  # the payload restores the global generator too
    copy = MetaTrainer(LSTMOptimizer(), task, schedule, seed=1)
    restored = copy.init(payload)
    assert weights_equal(restored.optimizer.state_dict(), state.optimizer.state_dict())
    assert restored.epoch == 1 and restored.result.history == state.result.history
    # both go on to the same weights
    assert weights_equal(copy.epoch(restored).optimizer.state_dict(),
                         trainer.epoch(state).optimizer.state_dict())


class ConstantGradient(GradientEstimator):
    """A toy estimator: a meta-gradient of ones after each (gradient-free) trajectory."""

    def __init__(self):
        self.batches = []

    def trajectory(self, optimizer, task, problems, steps, meta_step):
        self.batches.append(evaluate(optimizer, task, problems, steps).shape)
        weights = list(meta_step.state.optimizer.parameters())
        meta_step.gradients([torch.ones_like(w) for w in weights])


def test_another_estimator_plugs_into_the_loop():
    task = QuadraticTask()
    schedule = tiny_schedule(epochs=1, trajectories=3, meta_batch=2, steps=6,
                             validation_problems=3, meta_lr=1e-3)
    torch.manual_seed(0)
    estimator = ConstantGradient()
    trainer = MetaTrainer(HNN(), task, schedule, estimator=estimator)
    state = trainer.init()
    before = {k: v.clone() for k, v in state.optimizer.state_dict().items()}
    state = trainer.epoch(state)
    assert estimator.batches == [(2, 6)] * 3
    assert state.epoch == 1 and [h["epoch"] for h in state.result.history] == [0, 1]
    # three Adam steps on a constant gradient: each moves every weight down by the rate
    for k, v in state.optimizer.named_parameters():
        torch.testing.assert_close(v.detach(), before[k] - 3e-3, rtol=0, atol=1e-6)


class Log(Callback):
    def __init__(self, name, log):
        self.name, self.log = name, log

    def on_validation(self, trainer, state, record):
        self.log.append((self.name, "validation", record["epoch"]))

    def on_start(self, trainer, state):
        self.log.append((self.name, "start", state.epoch))

    def on_trajectory(self, trainer, state):
        self.log.append((self.name, "trajectory", state.epoch))

    def on_epoch(self, trainer, state):
        self.log.append((self.name, "epoch", state.epoch))

    def on_end(self, trainer, state):
        self.log.append((self.name, "end", state.epoch))


def test_callbacks_are_told_each_moment_in_order():
    log = []
    schedule = tiny_schedule(epochs=2, trajectories=2, meta_batch=1, steps=4, unroll=2,
                             validation_problems=2)
    trainer = MetaTrainer(HNN(), QuadraticTask(), schedule,
                          callbacks=[Log("a", log), Log("b", log)])
    trainer.run(trainer.init())

    def both(moment, epoch):
        return [("a", moment, epoch), ("b", moment, epoch)]

    expected = both("validation", 0) + both("start", 0)
    for epoch in (1, 2):
        expected += both("trajectory", epoch - 1) * 2 + both("validation", epoch)
        expected += both("epoch", epoch)
    assert log == expected + both("end", 2)


def test_compile_rolls_out_with_one_wrapper_and_trains_the_module(monkeypatch):
    class Counting(CompiledOptimizer):  # the eager step, counted: no compiler needed
        calls = 0

        def advance(self, params, grad, state, scale=None):
            Counting.calls += 1
            return self._eager(params, grad, state, scale)

    wrappers = []

    def compiled(self, mode=None):
        wrappers.append(Counting(self, mode))
        return wrappers[-1]

    monkeypatch.setattr(HNN, "compiled", compiled)
    schedule = tiny_schedule(epochs=2, trajectories=2, meta_batch=1, steps=6, unroll=3,
                             validation_problems=2)
    torch.manual_seed(0)
    eager = meta_train(HNN(), QuadraticTask(), schedule, progress=False, keep_last=True)
    assert wrappers == []
    torch.manual_seed(0)
    opt = HNN()
    result = meta_train(opt, QuadraticTask(), schedule, progress=False, keep_last=True,
                        compile=True)
    assert len(wrappers) == 1 and wrappers[0].module is opt
    # every step of every trajectory and of the three validations went through it
    assert Counting.calls == (2 * 2 + 3) * 6
    assert weights_equal(result.last_state, eager.last_state)


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


def test_seed_level_comparisons_call_a_direction_only_when_the_rank_test_agrees():
    clear = seed_comparison([0.2, 0.4, 0.22], [0.5, 0.6, 0.7])
    assert clear["verdict"] == "better" and (clear["pairs"], clear["of"]) == (9, 9)
    assert clear["ci95"][1] < 0 and clear["difference"] == pytest.approx(0.82 / 3 - 0.6)
    assert clear["p"] == pytest.approx(0.1)  # the smallest exact p of 3 against 3 seeds
    assert seed_comparison([0.5, 0.6, 0.7], [0.2, 0.4, 0.22])["verdict"] == "worse"
    # an interval that excludes 0 is not enough when one pair disagrees
    mixed = seed_comparison([0.0, 0.01, 0.9], [0.5, 0.6, 0.7], level=0.5)
    assert mixed["ci95"][1] < 0 and mixed["pairs"] == 6 and mixed["verdict"] == "undecided"
    # against a baseline (one value): a one-sample interval of the differences
    base = seed_comparison([0.23, 0.40, 0.22], 1.98)
    assert base["verdict"] == "better" and (base["pairs"], base["of"]) == (3, 3)
    assert base["seeds"] == [3, 1] and base["ci95"][0] < -1.69 < base["ci95"][1]
    for one in (seed_comparison([0.1], [0.9]), seed_comparison([0.1], 0.9),
                seed_comparison([0.1, 0.2], [0.9])):  # a learned variant's single meta-seed
        assert one["verdict"] == "one run" and one["ci95"] is None and one["p"] is None
    # with more seeds the rank test decides where some seed pairs disagree
    rng = np.random.default_rng(1)
    many = seed_comparison(0.3 + 0.15 * rng.standard_normal(10),
                           0.5 + 0.15 * rng.standard_normal(10))
    assert many["p"] < 0.05 and many["pairs"] < many["of"] and many["verdict"] == "better"
    assert smallest_p(3, 3) == pytest.approx(0.1) and smallest_p(3, None) == 0.25
    assert smallest_p(6, None) == pytest.approx(2 / 64)
    # 5 against 5 can reach p < 0.05, so an interval that excludes 0 needs the rank test too
    close = seed_comparison([0.1, 0.2, 0.3, 0.4, 0.45], [0.25, 0.5, 0.55, 0.6, 0.7])
    assert close["ci95"][1] < 0 and close["p"] > 0.05 and close["verdict"] == "undecided"
    with pytest.raises(ValueError, match="finite value per seed"):
        seed_comparison([0.1, np.inf], [0.2])
    with pytest.raises(ValueError, match="b must hold"):
        seed_comparison([0.1], [])


@pytest.mark.parametrize("seeds", [3, 10])
def test_the_seed_level_interval_covers_the_true_difference_as_stated(seeds):
    # seeds that vary as meta-trainings do: the t-interval over seeds keeps its 95% at 3
    # seeds, where a bootstrap of the runs covers about 76% (see the module)
    rng = np.random.default_rng(seeds)
    covered = 0
    trials = 400
    for _ in range(trials):
        a = 0.3 + rng.normal(scale=0.2, size=seeds)
        b = 0.5 + rng.normal(scale=0.3, size=seeds)
        lo, hi = seed_comparison(a, b)["ci95"]
        covered += lo <= -0.2 <= hi
    assert 0.91 <= covered / trials <= 0.99


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
