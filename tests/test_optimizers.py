"""Optimizers: parameter counts, the paper's equations, and one contract for all of them."""

import math

import pytest
import torch

from phys_l2o import build, registered, spec_of
from phys_l2o.optimizers import (
    HNN,
    GradientPreprocessing,
    HNNState,
    LSTMOptimizer,
    LSTMState,
    Optimizer,
    Segments,
    segment_normalize,
)
from phys_l2o.optimizers.base import advance, compile_available
from phys_l2o.optimizers.lstm import lstm_cell


@pytest.mark.parametrize("make, count", [
    (lambda: HNN(), 19),
    (lambda: HNN(preprocessing=True), 55),
    (lambda: LSTMOptimizer(), 5221),
    (lambda: LSTMOptimizer(preprocessing=True), 5301),
])
def test_paper_parameter_counts(make, count):
    assert make().num_params() == count


ALL_OPTIMIZERS = {
    "hnn": lambda: HNN(),
    "hnn-pre": lambda: HNN(preprocessing=True, normalize=False),
    "lstm": lambda: LSTMOptimizer(),
    "lstm-pre": lambda: LSTMOptimizer(preprocessing=True, out_mul=0.1),
    "hnn-rk4": lambda: HNN(readout={"type": "flow-readout", "flow": "rk4"}),
    "hnn-param": lambda: build({"type": "hnn-param", "correction_hidden": 4, "control": True}),
    **{name: (lambda name=name: build({"type": name, "lr": 0.01}))
       for name in registered("baseline")},
}


@pytest.mark.parametrize("name", sorted(ALL_OPTIMIZERS))
def test_optimizer_contract(name):
    """Shapes kept, inputs untouched, outputs finite, and batched == one problem at a time."""
    torch.manual_seed(0)
    opt = ALL_OPTIMIZERS[name]()
    assert isinstance(opt, Optimizer)
    assert build(opt.spec()).spec() == opt.spec() == spec_of(opt)
    segments = (6, 4)
    params, grads = torch.randn(3, 10), torch.randn(4, 3, 10)
    params_copy = params.clone()

    def run(p, gs):
        state = opt.init_state(p, segments)
        with torch.no_grad():
            for g in gs:
                p, state = advance(opt, p, g, state)
        return p

    batched = run(params, grads)
    torch.testing.assert_close(params, params_copy)
    assert batched.shape == params.shape and torch.isfinite(batched).all()
    for i in range(3):
        alone = run(params[i:i + 1], grads[:, i:i + 1])
        torch.testing.assert_close(alone, batched[i:i + 1], atol=1e-6, rtol=1e-5)


def test_baselines_are_torch_optim():
    p0, g = torch.randn(2, 5), torch.randn(2, 5)
    opt = build({"type": "nag", "lr": 0.1})
    state = opt.init_state(p0, (5,))
    p1, state = advance(opt, p0, g, state)
    assert opt.step_scale == 1.0
    ref = p0.clone().requires_grad_()
    torch_opt = torch.optim.SGD([ref], lr=0.1, momentum=0.9, nesterov=True)
    ref.grad = g.clone()
    torch_opt.step()
    torch.testing.assert_close(p1, ref.detach())
    with pytest.raises(ValueError, match="adam"):
        build({"type": "adagrad", "lr": 0.1})
    for lr in (0.0, float("inf"), True, "0.1"):
        with pytest.raises(ValueError, match="positive"):
            build({"type": "adam", "lr": lr})
    with pytest.raises(ValueError, match="momentun"):
        build({"type": "sgd", "lr": 0.1, "momentun": 0.5})


def test_preprocessing_formula():
    k = 10.0
    v = torch.tensor([[2.0], [-1e-6], [0.0], [-0.5]])
    out = GradientPreprocessing(k)(v)
    expected = torch.tensor([
        [math.log(2.0) / k, 1.0],
        [-1.0, -math.exp(k) * 1e-6],
        [-1.0, 0.0],
        [math.log(0.5) / k, -1.0],
    ])
    torch.testing.assert_close(out, expected)
    v = torch.zeros(3, 1, requires_grad=True)
    GradientPreprocessing()(v).sum().backward()
    assert torch.isfinite(v.grad).all()


def test_segment_normalize_per_parameter_tensor():
    x = torch.tensor([[3.0, 4.0, 1.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0, 5.0]])
    out = segment_normalize(x, Segments.of((2, 3)))
    expected = torch.tensor([[0.6, 0.8, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 1.0]])
    torch.testing.assert_close(out, expected)


def test_hnn_step_follows_the_paper():
    """theta' = theta + out_mul * W1 [dq/dt, q]; q_dot' = normalized W2 [dq/dt, dq_dot/dt] + b."""
    torch.manual_seed(1)
    opt = HNN(out_mul=0.5)
    params, grad = torch.randn(2, 4), torch.randn(2, 4)
    state = opt.init_state(params, (4,))._replace(q_dot=torch.randn(2, 4))
    assert isinstance(state, HNNState)
    q, q_dot = grad.unsqueeze(-1), state.q_dot.unsqueeze(-1)
    dq, dq_dot = opt.field(q, q_dot)
    w1 = opt.readout.direction_head.weight[0]
    w2, b2 = opt.readout.q_dot_head.weight[0], opt.readout.q_dot_head.bias
    update = w1[0] * dq + w1[1] * q
    q_dot_new = (w2[0] * dq + w2[1] * dq_dot + b2).squeeze(-1)
    q_dot_new = q_dot_new / q_dot_new.norm(dim=-1, keepdim=True)
    step, new_state = opt.step(params, grad, state)
    torch.testing.assert_close(step, update.squeeze(-1))     # the step returns the update
    new_params, _ = advance(opt, params, grad, state)         # applied at the trained out_mul
    assert opt.step_scale == 0.5
    torch.testing.assert_close(new_params, params + 0.5 * update.squeeze(-1))
    halved, _ = advance(opt, params, grad, state, scale=0.25)
    torch.testing.assert_close(halved, params + 0.25 * update.squeeze(-1))
    torch.testing.assert_close(new_state.q_dot, q_dot_new)


def test_build_roundtrip_and_errors():
    opt = HNN(preprocessing=True, out_mul=0.01, normalize=False)
    rebuilt = build(spec_of(opt))
    assert rebuilt.num_params() == 55 and rebuilt.out_mul == 0.01 and not rebuilt.normalize
    with pytest.raises(ValueError, match="hnn"):
        build("adamw", "optimizer")
    with pytest.raises(ValueError, match="euler-readout"):
        HNN(readout="no-such-readout")
    with pytest.raises(ValueError, match="'rk4' is a flow map, not a read-out"):
        HNN(readout="rk4")
    for bad in (-1.0, float("nan"), 0.0, True):
        with pytest.raises(ValueError, match="out_mul"):
            HNN(out_mul=bad)
    with pytest.raises(ValueError, match="hidden"):
        LSTMOptimizer(hidden=0)


@pytest.mark.parametrize("preprocessing, compiled", [
    (True, False), (False, False),
    pytest.param(True, True, marks=pytest.mark.skipif(
        not compile_available(), reason="torch.compile needs a C++ compiler"))])
def test_lstm_steps_are_two_stacked_lstm_cells_and_a_linear_head(preprocessing, compiled):
    """Values and meta-gradients through three chained steps equal those of ``nn.LSTMCell``."""
    torch.manual_seed(0)
    module = LSTMOptimizer(preprocessing=preprocessing, out_mul=0.5)
    opt = module.compiled() if compiled else module
    start, grads = torch.randn(2, 7), [torch.randn(2, 7) for _ in range(3)]
    h0 = [torch.randn(14, 20) * 0.5 for _ in range(2)]
    c0 = [torch.randn(14, 20) for _ in range(2)]

    def original():
        params, h, c = start, list(h0), list(c0)
        for grad in grads:
            x = opt.preprocess(grad.reshape(-1, 1))
            for k, cell in enumerate(opt.cells):
                h[k], c[k] = cell(x, (h[k], c[k]))
                x = h[k]
            params = params + 0.5 * opt.head(x).reshape(2, 7)
        return params, h, c

    def ours():
        params = start
        state = LSTMState(tuple(t.t().contiguous() for t in h0),
                          tuple(t.t().contiguous() for t in c0))
        for grad in grads:
            params, state = advance(opt, params, grad, state)
        return params, [t.t() for t in state.h], [t.t() for t in state.c]

    results = []
    for run in (original, ours):
        params, h, c = run()
        meta_loss = (params ** 2).sum() + (c[1] * h[0]).sum()
        results.append((params, h, c, torch.autograd.grad(meta_loss, list(opt.parameters()))))
    (p_a, h_a, c_a, g_a), (p_b, h_b, c_b, g_b) = results
    torch.testing.assert_close(p_b, p_a, rtol=1e-5, atol=1e-6)
    for a, b in zip(h_a + c_a, h_b + c_b):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    for (name, _), a, b in zip(opt.named_parameters(), g_a, g_b):
        assert a.abs().max() > 0, name
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)


def test_the_lstm_cell_backward_passes_gradcheck_and_vmaps():
    """The written-out backward agrees with finite differences in float64; under
    ``torch.func.vmap`` (its generated rule) values and gradients equal one call per member."""
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    x, h, c = rand(2, 5), rand(3, 5), rand(3, 5)
    weights = (rand(12, 2), rand(12, 3), rand(12))
    inputs = tuple(t.requires_grad_() for t in (x, h, c, *weights))
    assert torch.autograd.gradcheck(lstm_cell, inputs)

    def meta_loss(w_ih, w_hh, bias):
        h_new, c_new = lstm_cell(x.detach(), h.detach(), c.detach(), w_ih, w_hh, bias)
        return (h_new * c_new).sum() + (c_new ** 2).sum()

    stacked = [torch.stack([w.detach() + 0.1 * rand(*w.shape) for _ in range(4)])
               for w in weights]
    values = torch.func.vmap(meta_loss)(*stacked)
    grads = torch.func.vmap(torch.func.grad(meta_loss, argnums=(0, 1, 2)))(*stacked)
    for m in range(4):
        member = [w[m].clone().requires_grad_() for w in stacked]
        value = meta_loss(*member)
        torch.testing.assert_close(values[m], value)
        for g, expected in zip(grads, torch.autograd.grad(value, member)):
            torch.testing.assert_close(g[m], expected)


def test_paper_field_pieces_can_be_swapped_or_left_out():
    from phys_l2o.optimizers import paper_field
    from phys_l2o.physics import PSDDissipation

    field = paper_field(1, control=None, dissipation=PSDDissipation(1))
    assert field.control is None and isinstance(field.dissipation, PSDDissipation)
    assert HNN(field=paper_field(1, control=None)).num_params() == 15
    with pytest.raises(ValueError, match="inverse_inertia"):
        paper_field(1, inertia=None)


def test_a_field_of_another_width_is_refused_when_the_optimizer_is_built():
    from phys_l2o.optimizers import paper_field
    from phys_l2o.physics import PortHamiltonianField, PSDDissipation, ScalarPotentialMLP

    with pytest.raises(ValueError, match=r"d=1 features.*gives d=2"):
        HNN(field=paper_field(1), preprocessing=True)
    with pytest.raises(ValueError, match=r"d=2 features.*gives d=1"):
        HNN(field=paper_field(2))
    with pytest.raises(ValueError, match="different feature widths"):
        PortHamiltonianField(ScalarPotentialMLP(1), dissipation=PSDDissipation(2))
    # a spec takes its width from the optimizer; a spec that names another one is refused
    assert HNN(field={"type": "port-hamiltonian", "potential": "scalar-potential-mlp"},
               preprocessing=True).field.width == 2
    with pytest.raises(ValueError, match="width=1"):
        HNN(field={"type": "port-hamiltonian",
                   "potential": {"type": "scalar-potential-mlp", "width": 1}},
            preprocessing=True)

    class NoWidth(torch.nn.Module):  # a user's field that declares no width is tried on d
        def forward(self, q, q_dot):
            return q @ torch.ones(3, 3), q_dot

    with pytest.raises(ValueError, match="does not take d=1 features"):
        HNN(field=NoWidth())
