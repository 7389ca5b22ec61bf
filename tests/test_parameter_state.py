"""The parameter-state optimizer: momentum as a special case, shapes, gradients, training."""

import math

import pytest
import torch

from phys_l2o import build, registered, spec_of
from phys_l2o.integrators import count_calls
from phys_l2o.meta import Schedule, load_checkpoint, meta_train, rollout, save_checkpoint
from phys_l2o.optimizers import ParameterState, ParameterStateOptimizer, advance, momentum_sgd
from phys_l2o.physics import (
    ConstantInverseInertia,
    LossPotential,
    MomentumDissipation,
    PortHamiltonianField,
    QuadraticPotential,
)
from phys_l2o.tasks import QuadraticTask


def double_problems(num: int, seed: int = 0):
    task = QuadraticTask()
    problems = task.sample(num, torch.Generator().manual_seed(seed))
    return task, {k: v.double() for k, v in problems.items()}


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_sgd_is_torch_sgd(nesterov):
    """A port-Hamiltonian system with fixed pieces and one symplectic Euler step is SGD."""
    task, problems = double_problems(16)
    lr, mu = 0.01, 0.9
    opt = momentum_sgd(lr, mu, nesterov=nesterov).double()
    params = task.init_params(problems)
    state = opt.init_state(params, task.segments)
    leaf = params.clone().requires_grad_(True)
    reference = torch.optim.SGD([leaf], lr=lr, momentum=mu, nesterov=nesterov)
    for _ in range(200):
        _, grad = task.loss_and_grad(params, problems)
        params, state = advance(opt, params, grad, state)
        leaf.grad = task.loss_and_grad(leaf.detach(), problems)[1]
        reference.step()
        torch.testing.assert_close(params, leaf.detach(), atol=1e-6, rtol=0)
    # and the same loss curves through the shared rollout, against the paper's baselines
    baseline = build({"type": "nag" if nesterov else "sgd", "lr": lr})
    ours = rollout(opt, task, problems, 100)
    torch.testing.assert_close(ours, rollout(baseline, task, problems, 100), atol=1e-6, rtol=1e-6)


def test_momentum_sgd_is_built_from_fixed_pieces():
    opt = momentum_sgd(0.01, 0.9)
    field = opt.field
    assert isinstance(field.potential, LossPotential) and field.potential.correction is None
    assert isinstance(field.inverse_inertia, ConstantInverseInertia)
    assert field.inverse_inertia.value == 0.01
    assert isinstance(field.dissipation, MomentumDissipation)
    assert field.dissipation.gamma == pytest.approx((1 - 0.9) / 0.01)
    assert field.control is None and opt.num_params() == 0
    assert opt.name == "hnn-param"
    assert registered("optimizer")["hnn-param"] is ParameterStateOptimizer
    assert spec_of(opt) == {"type": "hnn-param", "lr": 0.01, "momentum": 0.9, "nesterov": False,
                            "learned": False, "correction_hidden": 0, "control": False,
                            "flow": "symplectic-euler"}


@pytest.mark.parametrize(("config", "count"), [
    ({}, 2),                                    # log M^{-1}, log a_p
    ({"nesterov": True}, 3),                    # and log a_q
    ({"correction_hidden": 4}, 2 + 13),         # MLP 1 -> 4 -> 1
    ({"control": True}, 2 + 4),                 # ControlMLP(1)
    ({"learned": False}, 0),
])
def test_parameter_counts_and_spec_roundtrip(config, count, tmp_path):
    torch.manual_seed(0)
    opt = ParameterStateOptimizer(**config)
    assert opt.num_params() == count
    with torch.no_grad():
        for weight in opt.parameters():
            weight.add_(0.1)
    save_checkpoint(tmp_path / "opt.pt", opt)
    rebuilt, _ = load_checkpoint(tmp_path / "opt.pt")
    assert spec_of(rebuilt) == spec_of(opt) == spec_of(build(spec_of(opt)))
    params, grad = torch.randn(2, 5), torch.randn(2, 5)
    with torch.no_grad():
        expected, _ = advance(opt, params, grad, opt.init_state(params, (5,)))
        got, _ = advance(rebuilt, params, grad, rebuilt.init_state(params, (5,)))
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("flow", sorted(registered("flow")))
def test_every_flow_shapes_and_gradients(flow):
    torch.manual_seed(0)
    opt = ParameterStateOptimizer(nesterov=True, correction_hidden=3, control=True, flow=flow)
    params, grads = torch.randn(3, 7), torch.randn(2, 3, 7)
    state = opt.init_state(params, (4, 3))
    new_params = params
    with count_calls(opt.field) as count:
        for grad in grads:
            new_params, state = advance(opt, new_params, grad, state)
    assert new_params.shape == state.q_dot.shape == (3, 7)
    assert count.calls >= 2 and torch.isfinite(new_params).all()
    (new_params.square().sum() + state.q_dot.sum()).backward()
    for key, weight in opt.named_parameters():
        assert weight.grad is not None and torch.isfinite(weight.grad).all(), key


def test_batched_is_one_problem_at_a_time():
    torch.manual_seed(0)
    opt = ParameterStateOptimizer(correction_hidden=3)
    params, grads = torch.randn(3, 6), torch.randn(4, 3, 6)

    def run(p, gs):
        state = opt.init_state(p, (6,))
        with torch.no_grad():
            for g in gs:
                p, state = advance(opt, p, g, state)
        return p

    batched = run(params, grads)
    for i in range(3):
        torch.testing.assert_close(run(params[i:i + 1], grads[:, i:i + 1]), batched[i:i + 1])


def test_an_ode_step_solves_the_frozen_gradient_system():
    """With the gradient held fixed, dopri5 gives the closed form of the damped drift."""
    lr, mu = 0.1, 0.5
    c, gamma = lr, (1 - mu) / lr                     # M^{-1}, friction on the momentum
    opt = ParameterStateOptimizer(lr=lr, momentum=mu, learned=False,
                                  flow={"type": "dopri5", "rtol": 1e-11, "atol": 1e-12}).double()
    q0, v0, g = (torch.randn(2, 5, dtype=torch.float64) for _ in range(3))
    with count_calls(opt.field) as count:
        update, state = opt.step(q0, g, ParameterState(v0))
    q1 = q0 + update                                 # applied at scale 1
    assert opt.step_scale == 1.0
    # v' = -c (g + gamma v)  =>  v(t) = -g/gamma + (v0 + g/gamma) exp(-c gamma t)
    rate, v_inf = c * gamma, -g / gamma
    decay = math.exp(-rate)
    torch.testing.assert_close(state.q_dot, v_inf + (v0 - v_inf) * decay)
    torch.testing.assert_close(q1, q0 + v_inf + (v0 - v_inf) * (1 - decay) / rate)
    assert count.calls > 2                           # adaptive: more than one stage


def test_loss_potential_takes_the_gradient_as_an_argument():
    potential = LossPotential()
    q = torch.randn(4, 1)
    with pytest.raises(ValueError, match="loss gradient"):
        potential.gradient(q)
    g, anchor = torch.randn(4, 1), torch.randn(4, 1)
    torch.testing.assert_close(potential.gradient(q + 1.0, g), g)      # frozen over the step
    torch.testing.assert_close(potential.energy(q, g, anchor), (g * (q - anchor)).sum(-1))
    # through the field: the gradient is an argument of the call, no state is kept
    field = PortHamiltonianField(potential)
    dq, dq_dot = field(q, torch.zeros_like(q), grad=g)
    torch.testing.assert_close(dq_dot, -g)
    with pytest.raises(ValueError, match="loss gradient"):
        field(q, torch.zeros_like(q))


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="LossPotential"):
        ParameterStateOptimizer(PortHamiltonianField(QuadraticPotential()))
    with pytest.raises(ValueError, match="adjoint"):
        ParameterStateOptimizer(flow={"type": "dopri5", "adjoint": True})
    with pytest.raises(ValueError, match="momentum"):
        ParameterStateOptimizer(momentum=1.0)
    with pytest.raises(ValueError, match="symplectic-euler"):
        ParameterStateOptimizer(flow="no-such-step")
    with pytest.raises(ValueError, match="is a read-out, not a flow map"):
        ParameterStateOptimizer(flow="euler-readout")


def test_meta_training_lowers_the_validation_loss():
    """From a too-small learning rate, a few meta-steps raise it (and lower the friction)."""
    torch.manual_seed(0)
    opt = ParameterStateOptimizer(lr=0.002, momentum=0.5)
    schedule = Schedule(epochs=2, trajectories=3, meta_batch=4, steps=20, unroll=10,
                        meta_lr=0.1, validation_problems=10)
    result = meta_train(opt, QuadraticTask(), schedule, progress=False)
    assert result.skipped_updates == 0
    assert result.best_epoch > 0
    assert result.best_validation < 0.9 * result.history[0]["validation"]
