"""Integrator backends: one sweep over every registered read-out, the flow maps, and the energy."""

import pytest
import torch
from torch import nn
from torch.func import functional_call

from phys_l2o import build, registered
from phys_l2o.integrators import EulerReadout, FlowReadout, count_calls, odeint_field
from phys_l2o.meta import Schedule, meta_train
from phys_l2o.meta.evaluate import field_evaluations
from phys_l2o.optimizers import HNN, advance, paper_field
from phys_l2o.physics import (
    CholeskyInverseInertia,
    ConstantInverseInertia,
    ControlMLP,
    LinearDissipation,
    PortHamiltonianField,
    PSDDissipation,
    QuadraticPotential,
    ScalarPotentialMLP,
)
from phys_l2o.tasks import QuadraticTask

#: the paper's read-out, and the flow read-out with every registered flow map.
NAMES = ["euler-readout", *sorted(registered("flow"))]


def make_readout(name: str, width: int, options: dict | None = None):
    """The read-out ``name``: ``euler-readout``, or a flow map's name (a ``flow-readout``)."""
    if name == "euler-readout":
        return build({"type": name, **(options or {})}, width=width)
    return build({"type": "flow-readout", "flow": {"type": name, **(options or {})}},
                 width=width)


def make_flow(name: str, options: dict | None = None):
    return build({"type": name, **(options or {})}, "flow")

#: the paper's inertia keeps an unused bias (for its parameter count): it never gets a gradient.
UNUSED = {"field.inverse_inertia.factor.bias"}


def smooth_field(width: int) -> PortHamiltonianField:
    """Every piece smooth (finite differences stay away from ReLU kinks)."""
    control = nn.Sequential(nn.Linear(width, 3), nn.Tanh(), nn.Linear(3, width))
    return PortHamiltonianField(ScalarPotentialMLP(width, hidden=3),
                                CholeskyInverseInertia(width, eps=0.1),
                                LinearDissipation(width), control)


class Step(nn.Module):
    """Field and integrator as one module, for ``functional_call``."""

    def __init__(self, field: nn.Module, integrator: nn.Module) -> None:
        super().__init__()
        self.field, self.integrator = field, integrator

    def forward(self, q, q_dot):
        return self.integrator(self.field, q, q_dot)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("width", [1, 2])
def test_output_shapes_and_nfe(name, width):
    torch.manual_seed(0)
    integrator = make_readout(name, width)
    q, q_dot = torch.randn(3, 5, width), torch.randn(3, 5, width)
    field = paper_field(width)
    with count_calls(field) as count:
        direction, next_q_dot = integrator(field, q, q_dot)
    assert direction.shape == next_q_dot.shape == (3, 5, 1)
    assert torch.isfinite(direction).all() and torch.isfinite(next_q_dot).all()
    assert count.calls >= 1
    assert (count.calls == 1) == (name in {"euler-readout", "euler"})


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_weight(name):
    torch.manual_seed(0)
    opt = HNN(readout=make_readout(name, 1))
    assert opt.num_params() == 19    # every read-out has the paper's heads
    params, grad = torch.randn(4, 10), torch.randn(4, 10)
    state = opt.init_state(params, (6, 4))
    new_params, new_state = advance(opt, params, grad, state)
    (new_params.square().sum() + new_state.q_dot.square().mul(torch.arange(10)).sum()).backward()
    for key, weight in opt.named_parameters():
        if key in UNUSED:
            assert weight.grad is None
            continue
        assert weight.grad is not None, key
        assert torch.isfinite(weight.grad).all(), key


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(name):
    """Analytic gradients w.r.t. the state and every weight match finite differences."""
    torch.manual_seed(0)
    options = {}
    if name in {"bosh3", "dopri5", "dopri8"}:
        # Back-propagation differentiates the solver's steps with their sizes held fixed, while
        # finite differences would also move the sizes. With huge tolerances every step is
        # accepted and grows by the same factor: the sizes no longer depend on the inputs.
        options = {"rtol": 1e3, "atol": 1e3, "options": {"first_step": 0.05}}
    step = Step(smooth_field(1), make_readout(name, 1, options)).double()
    keys = [k for k, _ in step.named_parameters() if k not in UNUSED]
    weights = [step.get_parameter(k).detach().clone().requires_grad_() for k in keys]
    q = torch.randn(2, 3, 1, dtype=torch.float64, requires_grad=True)
    q_dot = torch.randn(2, 3, 1, dtype=torch.float64, requires_grad=True)

    def fn(q, q_dot, *weights):
        return functional_call(step, dict(zip(keys, weights, strict=True)), (q, q_dot))

    assert torch.autograd.gradcheck(fn, (q, q_dot, *weights), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_adjoint_matches_backpropagation(method):
    """Both converge to the gradient of the exact flow (the adjoint solves its own ODE)."""
    torch.manual_seed(0)
    field = smooth_field(2).double()
    q, q_dot = torch.randn(3, 4, 2, dtype=torch.float64), torch.randn(3, 4, 2, dtype=torch.float64)
    options = {"horizon": 0.5, "rtol": 1e-10, "atol": 1e-10}
    if method == "rk4":
        options["options"] = {"step_size": 0.01}
    plain = make_readout(method, 2, options).double()
    adjoint = make_readout(method, 2, {**options, "adjoint": True}).double()
    adjoint.load_state_dict(plain.state_dict())
    grads = []
    for integrator in (plain, adjoint):
        q_in, q_dot_in = q.clone().requires_grad_(), q_dot.clone().requires_grad_()
        direction, next_q_dot = integrator(field, q_in, q_dot_in)
        meta_loss = direction.pow(2).sum() + next_q_dot.sum()
        inputs = [q_in, q_dot_in, *field.parameters()]
        grads.append(torch.autograd.grad(meta_loss, inputs, materialize_grads=True))
    for g_plain, g_adjoint in zip(*grads, strict=True):
        torch.testing.assert_close(g_adjoint, g_plain, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun3", "rk4"])
@pytest.mark.parametrize("options", [{}, {"horizon": 0.6, "options": {"step_size": 0.2}},
                                     {"options": {"step_size": 0.3}}])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fixed_grid_flows_take_torchdiffeqs_steps_and_stack(method, options, dtype):
    """The same grid (a shorter last step where h does not divide T) and the same operations as
    ``torchdiffeq.odeint``, bit for bit; and, unlike odeint, they run under vmap."""
    torch.manual_seed(0)
    flow, field = make_flow(method, options), smooth_field(3).to(dtype)
    q, q_dot = torch.randn(5, 3, dtype=dtype), torch.randn(5, 3, dtype=dtype)
    t = torch.tensor([0.0, flow.horizon], dtype=dtype)
    expected = odeint_field(field, q, q_dot, t, method=method, options=flow.options)
    for got, want in zip(flow(field, q, q_dot), expected, strict=True):
        assert torch.equal(got, want[-1])
    with pytest.raises(RuntimeError):  # what these flows are for: odeint cannot be vmapped
        torch.func.vmap(lambda a, b: odeint_field(field, a, b, t, method=method))(q, q_dot)
    stacked = torch.func.vmap(lambda a, b: flow(field, a, b))(q, q_dot)
    for got, want in zip(stacked, expected, strict=True):
        torch.testing.assert_close(got, want[-1])


def test_euler_readout_through_the_registry_is_the_default():
    grad, params = torch.randn(3, 10), torch.zeros(3, 10)
    outputs = []
    for integrator in ["default", "euler-readout", "euler", "euler-horizon"]:
        torch.manual_seed(0)
        if integrator == "default":
            opt = HNN()
        elif integrator == "euler-horizon":
            opt = HNN(readout={"type": "flow-readout",
                               "flow": {"type": "euler", "horizon": 0.3}})
        elif integrator == "euler":
            opt = HNN(readout={"type": "flow-readout", "flow": "euler"})
        else:
            opt = HNN(readout=integrator)
        if integrator.startswith("euler-h") or integrator == "euler":
            assert isinstance(opt.readout, FlowReadout)
        state = opt.init_state(params, (10,))
        for _ in range(3):
            params_next, state = advance(opt, params, grad, state)
        outputs.append((params_next, state.q_dot))
    assert isinstance(HNN().readout, EulerReadout)
    for p, q_dot in outputs[1:]:
        # one explicit Euler step, of any horizon, is the paper's read-out
        torch.testing.assert_close(p, outputs[0][0])
        torch.testing.assert_close(q_dot, outputs[0][1])


def test_options_are_checked():
    with pytest.raises(ValueError, match=r"takes no option \['horizn'\]"):
        make_readout("rk4", 1, {"horizn": 2.0})
    with pytest.raises(ValueError, match="horizon"):
        make_readout("dopri5", 1, {"horizon": -1.0})
    with pytest.raises(ValueError, match="symplectic-euler"):
        make_flow("no-such-flow")
    with pytest.raises(ValueError, match=r"takes only options.step_size.*\['perturb'\]"):
        make_flow("midpoint", {"options": {"perturb": True}})
    with pytest.raises(ValueError, match="step_size"):
        make_flow("rk4", {"options": {"step_size": 0.0}})
    flow = make_flow("rk4", {"options": {"step_size": 0.25}})
    field = paper_field(1)
    with count_calls(field) as count:
        flow(field, torch.randn(2, 1), torch.randn(2, 1))
    assert count.calls == 16


def test_meta_training_with_an_ode_integrator():
    torch.manual_seed(0)
    opt = HNN(readout={"type": "flow-readout", "flow": {"type": "rk4", "horizon": 0.5}})
    schedule = Schedule(epochs=1, trajectories=3, steps=20, unroll=10, validation_problems=5)
    before = [w.detach().clone() for w in opt.parameters()]
    task = QuadraticTask()
    result = meta_train(opt, task, schedule, progress=False)
    problems = task.sample(2, torch.Generator().manual_seed(0))
    nfe = field_evaluations(opt, task, problems, 5)
    assert nfe == 4 and isinstance(nfe, int)                      # rk4: four per step
    assert len(result.history) == 2 and result.skipped_updates == 0
    assert all(torch.isfinite(torch.tensor(h["validation"])) for h in result.history)
    assert any(not torch.equal(a, b) for a, b in zip(before, opt.parameters(), strict=True))


# ---------------------------------------------------------------- flow maps and the energy


def hamiltonian_field(potential: str, inertia: str, dissipation: bool) -> PortHamiltonianField:
    pot = ScalarPotentialMLP(2) if potential == "mlp" else QuadraticPotential(1.5)
    inv = (CholeskyInverseInertia(2, eps=0.1) if inertia == "cholesky"
           else ConstantInverseInertia(0.7))
    return PortHamiltonianField(pot, inv, PSDDissipation(2) if dissipation else None).double()


def energy_along_flow(field: PortHamiltonianField, times: int) -> torch.Tensor:
    """``H`` ``(time, batch)`` along an accurate dopri5 solve over ``[0, 3]`` from random states."""
    q, q_dot = torch.randn(8, 2, dtype=torch.float64), torch.randn(8, 2, dtype=torch.float64)
    t = torch.linspace(0.0, 3.0, times, dtype=torch.float64)
    with torch.no_grad():
        q_t, q_dot_t = odeint_field(field, q, q_dot, t, method="dopri5", rtol=1e-10, atol=1e-10)
    return field.hamiltonian(q_t, q_dot_t)


@pytest.mark.parametrize("potential", ["mlp", "quadratic"])
@pytest.mark.parametrize("inertia", ["cholesky", "constant"])
def test_energy_does_not_increase_with_psd_dissipation(potential, inertia):
    torch.manual_seed(0)
    energy = energy_along_flow(hamiltonian_field(potential, inertia, dissipation=True), 31)
    assert (energy.diff(dim=0) <= 1e-8).all()
    assert (energy[-1] < energy[0] - 1e-6).any()


@pytest.mark.parametrize("potential", ["mlp", "quadratic"])
@pytest.mark.parametrize("inertia", ["cholesky", "constant"])
def test_energy_is_conserved_without_dissipation(potential, inertia):
    torch.manual_seed(0)
    energy = energy_along_flow(hamiltonian_field(potential, inertia, dissipation=False), 7)
    torch.testing.assert_close(energy, energy[:1].expand_as(energy), atol=1e-7, rtol=0)


def test_energy_balance_of_the_field():
    """dH/dt along the field = -[dV/dq, q_dot]^T D [dV/dq, q_dot] + q_dot^T G (any D)."""
    torch.manual_seed(0)
    field = PortHamiltonianField(ScalarPotentialMLP(2), CholeskyInverseInertia(2, eps=0.1),
                                 LinearDissipation(2), ControlMLP(2)).double()
    q = torch.randn(16, 2, dtype=torch.float64, requires_grad=True)
    q_dot = torch.randn(16, 2, dtype=torch.float64, requires_grad=True)
    dh_dq, dh_dq_dot = torch.autograd.grad(field.hamiltonian(q, q_dot).sum(), (q, q_dot))
    dq, dq_dot = field(q, q_dot)
    dh_dt = (dh_dq * dq).sum(-1) + (dh_dq_dot * dq_dot).sum(-1)
    grad_h = torch.cat([field.potential.gradient(q), q_dot], dim=-1)
    expected = -(grad_h * field.dissipation(grad_h)).sum(-1) + (q_dot * field.control(q)).sum(-1)
    torch.testing.assert_close(dh_dt, expected)


@pytest.mark.parametrize("name", ["symplectic-euler", "leapfrog", "euler"])
def test_symplectic_schemes_preserve_phase_space_volume(name):
    """Without dissipation and control, det d(q_T, q_dot_T) / d(q, q_dot) = 1 (not for Euler)."""
    torch.manual_seed(0)
    field = hamiltonian_field("mlp", "cholesky", dissipation=False)
    options = {"horizon": 0.6, "steps": 3} if name in {"symplectic-euler", "leapfrog"} else {
        "horizon": 0.6, "options": {"step_size": 0.2}}
    flow = make_flow(name, options)

    def step(x):
        return torch.cat(flow(field, x[:2], x[2:]))

    det = torch.linalg.det(torch.autograd.functional.jacobian(step, torch.randn(4).double()))
    if name in {"symplectic-euler", "leapfrog"}:
        assert abs(det.item() - 1.0) < 1e-12
    else:
        assert abs(det.item() - 1.0) > 1e-6


def test_symplectic_energy_stays_bounded_where_explicit_euler_grows():
    field = PortHamiltonianField(QuadraticPotential(1.0)).double()    # harmonic oscillator
    q, q_dot = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    drift = {}
    for name, options in [("symplectic-euler", {"horizon": 100.0, "steps": 1000}),
                          ("leapfrog", {"horizon": 100.0, "steps": 1000}),
                          ("euler", {"horizon": 100.0, "options": {"step_size": 0.1}})]:
        q_t, q_dot_t = make_flow(name, options)(field, q, q_dot)
        drift[name] = (field.hamiltonian(q_t, q_dot_t) / field.hamiltonian(q, q_dot)).item()
    assert abs(drift["symplectic-euler"] - 1) < 0.1
    assert abs(drift["leapfrog"] - 1) < 0.01
    assert drift["euler"] > 100.0


def test_every_flow_reads_out_through_the_flow_readout():
    for name in registered("flow"):
        readout = build({"type": "flow-readout", "flow": name}, width=1)
        assert readout.flow._spec_type == name
