"""Evolution-strategy estimators: against autograd, batched against member by member, resumed
runs, a real short meta-training, bad options."""

import copy
import warnings
from types import SimpleNamespace

import pytest
import torch

import phys_l2o
from phys_l2o.meta import PES, EvolutionStrategies, MetaTrainer, Population, Schedule
from phys_l2o.meta.es import LOG_RATIO_LIMIT, flat_weights
from phys_l2o.meta.estimators import truncated_rollout
from phys_l2o.meta.rollout import rollout
from phys_l2o.optimizers import HNN, LSTMOptimizer
from phys_l2o.optimizers.base import CompiledOptimizer
from phys_l2o.seeding import make_generator
from phys_l2o.tasks import QuadraticTask


class Recorder:
    """A meta-step that records each flattened meta-gradient and leaves the weights alone; the
    noise comes from its state's generator, as a training state's does."""

    def __init__(self, seed=0):
        self.grads = []
        self.state = SimpleNamespace(generator=torch.Generator().manual_seed(seed))

    def gradients(self, grads):
        self.grads.append(grads)
        return True

    def flat(self, i):
        return torch.cat([g.reshape(-1) for g in self.grads[i]])


def toy():
    """The paper's quadratic HNN on 8 three-dimensional quadratics."""
    torch.manual_seed(0)
    task = QuadraticTask(dim=3)
    return HNN(), task, task.sample(8, make_generator(1, "es"))


def exact_gradient(opt, task, problems, steps):
    """The autograd gradient of the mean loss over ``steps`` steps and the problems (the task
    gradient detached, as in meta-training), flattened; unused weights get zeros."""
    totals = []
    truncated_rollout(opt, task, problems, steps, steps, lambda total: totals.append(total) or True)
    weights = list(opt.parameters())
    grads = torch.autograd.grad(totals[0] / steps, weights, allow_unused=True)
    return torch.cat([(torch.zeros_like(w) if g is None else g).reshape(-1)
                      for w, g in zip(weights, grads)])


def cosine(a, b):
    return float(a @ b / (a.norm() * b.norm()))


def relative_error(estimate, exact):
    return float((estimate - exact).norm() / exact.norm())


def test_es_with_2000_pairs_agrees_with_autograd():
    opt, task, problems = toy()
    exact = exact_gradient(opt, task, problems, 5)
    recorder = Recorder(seed=3)
    EvolutionStrategies(population=4000, sigma=1e-3).trajectory(opt, task, problems, 5,
                                                                recorder)
    assert len(recorder.grads) == 1                        # one meta-step per trajectory
    assert [g.shape for g in recorder.grads[0]] == [w.shape for w in opt.parameters()]
    estimate = recorder.flat(0)
    assert cosine(estimate, exact) > 0.98                  # measured: 0.997
    assert relative_error(estimate, exact) < 0.2           # measured: 0.09


def test_pes_over_truncations_matches_the_whole_horizon_gradient():
    opt, task, problems = toy()
    exact = exact_gradient(opt, task, problems, 6)
    recorder = Recorder(seed=3)
    PES(2, population=4000, sigma=1e-3).trajectory(opt, task, problems, 6, recorder)
    assert len(recorder.grads) == 3
    # equal truncations of a mean objective: their mean estimates the whole horizon's
    # gradient (the weights are left alone by the recorder, so theta is fixed)
    pes = torch.stack([recorder.flat(i) for i in range(3)]).mean(0)
    es = EvolutionStrategies(population=4000, sigma=1e-3).estimate(
        opt, task, problems, 6, torch.Generator().manual_seed(4))
    assert cosine(pes, exact) > 0.98 and cosine(pes, es) > 0.98    # measured: 0.997, 0.995
    # the truncations' own gradients (no persistence) are 0.43 of this one: error 0.57
    assert relative_error(pes, exact) < 0.2                         # measured: 0.08


def test_pes_with_one_truncation_is_es():
    opt, task, problems = toy()
    recorder = Recorder(seed=7)
    PES(10, population=6, objective="log-ratio").trajectory(opt, task, problems, 5,
                                                                 recorder)
    es = EvolutionStrategies(population=6, objective="log-ratio")
    torch.testing.assert_close(recorder.flat(0), es.estimate(
        opt, task, problems, 5, torch.Generator().manual_seed(7)), rtol=0, atol=0)


def member_objectives(opt, task, problems, steps, weights, objective):
    """Each member's objective from a plain rollout of a copy with its weights."""
    initial = task.loss(task.init_params(problems), problems)
    values = []
    for w in weights:
        member = copy.deepcopy(opt)
        torch.nn.utils.vector_to_parameters(w, member.parameters())
        with torch.no_grad():
            curve = rollout(member, task, problems, steps)
        values.append(curve.mean() if objective in (None, "loss")
                      else torch.log(curve / initial[:, None]).mean())
    return torch.stack(values)


@pytest.mark.parametrize("make", [HNN, lambda: HNN(preprocessing=True, normalize=False),
                                  LSTMOptimizer], ids=["hnn", "mnist-hnn", "lstm"])
@pytest.mark.parametrize("objective", [None, "loss", "log-ratio"])
def test_the_batched_population_equals_member_by_member(make, objective):
    """Every optimizer's step runs under vmap (the LSTM's autograd.Function too), without a
    warning, and gives the values of the member-by-member loop and of plain rollouts."""
    torch.manual_seed(0)
    opt, task = make(), QuadraticTask(dim=4)
    task.segments = (1, 3)                       # two parameter tensors: per-segment norms
    problems = task.sample(3, make_generator(2, "es"))
    theta = flat_weights(opt)
    weights = theta + 0.05 * torch.randn(6, theta.numel())
    expected = member_objectives(opt, task, problems, 7, weights, objective)
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # no fallback to a loop
        auto = Population(opt, task, problems, 6, objective=objective)
        batched = torch.cat([auto.run(weights, 3), auto.run(weights, 7)])
    looped = Population(opt, task, problems, 6, objective=objective, vectorize=False)
    one_by_one = torch.cat([looped.run(weights, 3), looped.run(weights, 7)])
    assert auto.vectorize is None                # vmap ran every step
    # the objective of steps 1-7 is the mean of those of steps 1-3 and 4-7
    torch.testing.assert_close((3 * batched[:6] + 4 * batched[6:]) / 7, expected,
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batched, one_by_one, rtol=1e-5, atol=1e-6)


def test_a_diverged_member_costs_a_finite_log_ratio_penalty():
    torch.manual_seed(0)
    opt, task = HNN(out_mul=1e30), QuadraticTask(dim=3)
    problems = task.sample(2, make_generator(0, "es"))
    theta = flat_weights(opt)
    values = Population(opt, task, problems, 2, objective="log-ratio").run(
        theta.expand(2, -1), 4)
    assert torch.isfinite(values).all() and float(values.max()) > 0.5 * LOG_RATIO_LIMIT


def test_a_frozen_weight_is_not_perturbed_and_gets_no_gradient():
    opt, task, problems = toy()
    frozen = next(opt.parameters())
    frozen.requires_grad_(False)
    recorder = Recorder()
    EvolutionStrategies(population=4).trajectory(opt, task, problems, 3, recorder)
    grads = recorder.grads[0]
    assert grads[0] is None and all(g is not None for g in grads[1:])


def test_a_compiled_wrapper_is_estimated_through_its_module():
    opt, task, problems = toy()
    estimates = []
    for runner in (opt, CompiledOptimizer(opt)):
        torch.manual_seed(5)
        estimates.append(EvolutionStrategies(population=4).estimate(runner, task, problems, 3))
    torch.testing.assert_close(estimates[0], estimates[1], rtol=0, atol=0)


def schedule(**kw):
    return Schedule(**{**dict(epochs=2, trajectories=2, steps=5, unroll=5,
                              validation_problems=2), **kw})


@pytest.mark.parametrize("estimator", [EvolutionStrategies(population=4),
                                       PES(2, population=4)], ids=repr)
def test_a_resumed_es_run_equals_an_uninterrupted_one(estimator):
    task = QuadraticTask()

    def trainer(seed=3):
        return MetaTrainer(HNN(), task, schedule(), seed=seed, estimator=estimator)

    def weights(state):
        return state.optimizer.state_dict()

    torch.manual_seed(1)
    straight = trainer()
    state = straight.init()
    for _ in range(2):
        state = straight.epoch(state)
    torch.manual_seed(1)  # the same initial weights
    first = trainer()
    payload = first.epoch(first.init()).to_payload(schedule=schedule(), seed=3)
    torch.manual_seed(99)  # the noise comes from the state's generator, not the global one
    resumed = trainer()
    again = resumed.epoch(resumed.init(payload))
    for k, v in weights(state).items():
        assert torch.equal(v, weights(again)[k]), k
    # the noise matters: another seed draws other noise (and problems): other weights
    torch.manual_seed(1)
    other = trainer(seed=4)
    moved = other.init()
    for _ in range(2):
        moved = other.epoch(moved)
    assert not all(torch.equal(v, weights(moved)[k]) for k, v in weights(state).items())


def test_es_meta_training_lowers_the_validation_loss():
    torch.manual_seed(0)
    trainer = MetaTrainer(HNN(), QuadraticTask(),
                          schedule(epochs=3, trajectories=5, meta_batch=4, steps=30,
                                   validation_problems=16, meta_lr=0.02),
                          estimator=EvolutionStrategies(population=8, sigma=0.01))
    state = trainer.init()
    while state.epoch < 3:
        state = trainer.epoch(state)
    history = [h["validation"] for h in state.result.history]
    assert state.result.skipped_updates == 0
    assert state.result.best_validation < 0.85 * history[0]    # measured: 0.76


@pytest.mark.parametrize("options", [dict(population=7), dict(population=0),
                                     dict(population=True), dict(sigma=0.0),
                                     dict(sigma=-0.1), dict(sigma=float("nan")),
                                     dict(objective="final-loss"),
                                     dict(objective="mean-loss")])
def test_bad_options_are_refused(options):
    with pytest.raises(ValueError):
        EvolutionStrategies(**options)
    with pytest.raises(ValueError):
        PES(5, **options)


def test_bad_truncations_and_weights_are_refused():
    for unroll in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="truncation"):
            PES(unroll)
    opt, task, problems = toy()
    members = Population(opt, task, problems, 2)
    with pytest.raises(ValueError, match="members, dims"):
        members.run(flat_weights(opt).expand(3, -1), 2)
    members.run(flat_weights(opt).expand(2, -1), 2)
    with pytest.raises(ValueError, match="not after"):
        members.run(flat_weights(opt).expand(2, -1), 2)


def test_an_lstm_population_is_stepped_through_vmap():
    """The LSTM's step (a written-out autograd.Function) runs under vmap: an ES estimate with
    the batched population equals the member-by-member one to float rounding."""
    torch.manual_seed(0)
    opt, task = LSTMOptimizer(out_mul=0.1), QuadraticTask(dim=3)
    problems = task.sample(4, make_generator(3, "es"))
    estimates = []
    for vectorize in (True, False):
        torch.manual_seed(5)
        estimates.append(EvolutionStrategies(population=8, vectorize=vectorize)
                         .estimate(opt, task, problems, 6))
    torch.testing.assert_close(estimates[0], estimates[1], rtol=1e-4, atol=1e-4)


def test_estimators_are_built_from_specs_and_give_them_back():
    pes = phys_l2o.build({"type": "pes", "unroll": 4, "population": 6,
                          "objective": "log-ratio"}, "estimator")
    assert isinstance(pes, PES) and (pes.unroll, pes.population, pes.sigma) == (4, 6, 0.01)
    spec = phys_l2o.spec_of(pes)
    assert spec == {"type": "pes", "unroll": 4, "population": 6, "sigma": 0.01,
                    "objective": "log-ratio"}
    assert phys_l2o.spec_of(phys_l2o.build(spec, "estimator")) == spec
    es = phys_l2o.build("es", "estimator")
    assert phys_l2o.spec_of(es) == {"type": "es", "population": 8, "sigma": 0.01}
    assert es.objective is None and PES().unroll == 10
    with pytest.raises(AttributeError, match="part of its spec"):
        pes.population = 8
    # a trajectory leaves the options alone (the guard would refuse an assignment)
    opt, task, problems = toy()
    pes.trajectory(opt, task, problems, 5, Recorder())
    assert phys_l2o.spec_of(pes) == spec
