"""Optimizers: parameter counts, the paper's equations, and one contract for all of them."""

import math

import pytest
import torch

from phys_l2o.optimizers import (
    BASELINES,
    HNN,
    GradientPreprocessing,
    LSTMOptimizer,
    TorchOptimizer,
    build_optimizer,
    segment_normalize,
)
from phys_l2o.optimizers.base import segment_ids


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
    "hnn-rk4": lambda: HNN(integrator="rk4"),
    "hnn-param": lambda: build_optimizer("hnn-param", correction_hidden=4, control=True),
    **{name: (lambda name=name: TorchOptimizer(name, 0.01)) for name in BASELINES},
}


@pytest.mark.parametrize("name", sorted(ALL_OPTIMIZERS))
def test_optimizer_contract(name):
    """Shapes kept, inputs untouched, outputs finite, and batched == one problem at a time."""
    torch.manual_seed(0)
    opt = ALL_OPTIMIZERS[name]()
    segments = (6, 4)
    params, grads = torch.randn(3, 10), torch.randn(4, 3, 10)
    params_copy = params.clone()

    def run(p, gs):
        state = opt.init_state(p, segments)
        with torch.no_grad():
            for g in gs:
                p, state = opt.step(p, g, state)
        return p

    batched = run(params, grads)
    torch.testing.assert_close(params, params_copy)
    assert batched.shape == params.shape and torch.isfinite(batched).all()
    for i in range(3):
        alone = run(params[i:i + 1], grads[:, i:i + 1])
        torch.testing.assert_close(alone, batched[i:i + 1], atol=1e-6, rtol=1e-5)


def test_baselines_are_torch_optim():
    p0, g = torch.randn(2, 5), torch.randn(2, 5)
    opt = TorchOptimizer("nag", 0.1)
    state = opt.init_state(p0, (5,))
    p1, state = opt.step(p0, g, state)
    ref = p0.clone().requires_grad_()
    torch_opt = torch.optim.SGD([ref], lr=0.1, momentum=0.9, nesterov=True)
    ref.grad = g.clone()
    torch_opt.step()
    torch.testing.assert_close(p1, ref.detach())
    with pytest.raises(ValueError, match="adam"):
        TorchOptimizer("adagrad", 0.1)
    with pytest.raises(ValueError, match="positive"):
        TorchOptimizer("adam", 0.0)


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
    ids = segment_ids((2, 3))
    out = segment_normalize(x, ids, 2)
    expected = torch.tensor([[0.6, 0.8, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 1.0]])
    torch.testing.assert_close(out, expected)


def test_hnn_step_follows_the_paper():
    """theta' = theta + out_mul * W1 [dq/dt, q]; q_dot' = normalized W2 [dq/dt, dq_dot/dt] + b."""
    torch.manual_seed(1)
    opt = HNN(out_mul=0.5)
    params, grad = torch.randn(2, 4), torch.randn(2, 4)
    state = opt.init_state(params, (4,))
    state["q_dot"] = torch.randn(2, 4)
    q, q_dot = grad.unsqueeze(-1), state["q_dot"].unsqueeze(-1)
    dq, dq_dot = opt.field(q, q_dot)
    w1 = opt.integrator.direction_head.weight[0]
    w2, b2 = opt.integrator.q_dot_head.weight[0], opt.integrator.q_dot_head.bias
    update = w1[0] * dq + w1[1] * q
    q_dot_new = (w2[0] * dq + w2[1] * dq_dot + b2).squeeze(-1)
    q_dot_new = q_dot_new / q_dot_new.norm(dim=-1, keepdim=True)
    new_params, new_state = opt.step(params, grad, state)
    torch.testing.assert_close(new_params, params + 0.5 * update.squeeze(-1))
    torch.testing.assert_close(new_state["q_dot"], q_dot_new)


def test_build_optimizer_roundtrip_and_errors():
    opt = HNN(preprocessing=True, out_mul=0.01, normalize=False)
    rebuilt = build_optimizer(opt.name, **opt.config())
    assert rebuilt.num_params() == 55 and rebuilt.out_mul == 0.01 and not rebuilt.normalize
    with pytest.raises(ValueError, match="hnn"):
        build_optimizer("adamw")
    with pytest.raises(ValueError, match="euler-readout"):
        HNN(integrator="no-such-integrator")


def test_lstm_step_is_two_stacked_lstm_cells_and_a_linear_head():
    torch.manual_seed(0)
    opt = LSTMOptimizer(preprocessing=True, out_mul=0.5)
    params, grad = torch.randn(2, 7), torch.randn(2, 7)
    state = opt.init_state(params, (7,))
    state = {k: torch.randn_like(v) for k, v in state.items()}
    x = opt.preprocess(grad.reshape(-1, 1))
    h0, c0 = opt.cells[0](x, (state["h0"], state["c0"]))
    h1, c1 = opt.cells[1](h0, (state["h1"], state["c1"]))
    expected = params + 0.5 * opt.head(h1).reshape(2, 7)
    new_params, new_state = opt.step(params, grad, state)
    torch.testing.assert_close(new_params, expected)
    torch.testing.assert_close(new_state["c1"], c1)
    torch.testing.assert_close(new_state["h0"], h0)


def test_paper_field_pieces_can_be_swapped_or_left_out():
    from phys_l2o.optimizers import paper_field
    from phys_l2o.physics import PSDDissipation

    field = paper_field(1, control=None, dissipation=PSDDissipation(1))
    assert field.control is None and isinstance(field.dissipation, PSDDissipation)
    assert HNN(field=paper_field(1, control=None)).num_params() == 15
    with pytest.raises(ValueError, match="inverse_inertia"):
        paper_field(1, inertia=None)
