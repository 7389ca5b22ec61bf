"""``compile_step``: the compiled step computes what the eager step computes, and its switch."""

import pytest
import torch

from phys_l2o.optimizers import base
from phys_l2o.physics import FeatureLinear
from phys_l2o.reproduce import paper_optimizer, use_compile

needs_compiler = pytest.mark.skipif(not base.compile_available(),
                                    reason="torch.compile needs a C++ compiler")


def unroll(optimizer, params, grads):
    """Three steps from fresh state; the updates and the gradient of their sum of squares."""
    state = optimizer.init_state(params, [params.shape[1] - 7, 7])
    x = params
    for grad in grads:
        x, state = optimizer.step(x, grad, state)
    loss = ((x - params) ** 2).sum()
    weights = list(optimizer.parameters())
    grads = torch.autograd.grad(loss, weights, allow_unused=True)  # the inertia's bias is unused
    return x - params, [torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads)]


@needs_compiler
@pytest.mark.parametrize("task, name", [("mnist", "hnn"), ("mnist", "lstm"),
                                        ("quadratic", "hnn")])
def test_compiled_step_matches_eager_in_value_and_meta_gradient(task, name):
    gen = torch.Generator().manual_seed(0)
    params = torch.randn(3, 40, generator=gen)
    grads = [torch.randn(3, 40, generator=gen) * 10.0 ** -k for k in range(3)]
    optimizer = paper_optimizer(task, name, seed=1)
    eager_update, eager_grad = unroll(optimizer, params, grads)
    assert "step" in optimizer.compile_step().__dict__
    compiled_update, compiled_grad = unroll(optimizer, params, grads)
    assert eager_update.abs().max() > 0
    torch.testing.assert_close(compiled_update, eager_update, rtol=1e-4, atol=1e-7)
    for c, e in zip(compiled_grad, eager_grad):
        torch.testing.assert_close(c, e, rtol=1e-3, atol=1e-6)
    # and back to eager mode
    assert "step" not in optimizer.compile_step(False).__dict__


@needs_compiler
def test_feature_linear_unrolls_only_under_compilation():
    layer = FeatureLinear(3, 2)
    x = torch.randn(5, 4, 3)
    expected = torch.nn.functional.linear(x, layer.weight, layer.bias)
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(torch.compile(layer)(x), expected, rtol=1e-5, atol=1e-6)
    assert isinstance(layer, torch.nn.Linear) and set(layer.state_dict()) == {"weight", "bias"}


def test_compile_without_a_compiler_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(base.shutil, "which", lambda name: None)
    optimizer = paper_optimizer("mnist", "hnn", seed=0)
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler.*--no-compile"):
        optimizer.compile_step()
    assert "step" not in optimizer.__dict__
    assert use_compile(None, "paper") is False   # auto mode falls back to eager


def test_auto_compile_is_for_the_paper_budget_only():
    assert use_compile(None, "smoke") is False
    assert use_compile(None, "paper") is base.compile_available()
    assert use_compile(True, "smoke") is True and use_compile(False, "paper") is False


def test_cli_compile_switch_defaults_to_auto():
    from phys_l2o.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["reproduce", "mnist"]).compile is None
    assert parser.parse_args(["reproduce", "mnist", "--no-compile"]).compile is False
    assert parser.parse_args(["train", "--out", "x.pt", "--compile"]).compile is True


def test_a_piece_that_cannot_be_compiled_is_refused_at_once():
    from phys_l2o import HNN, PortHamiltonianField
    from phys_l2o.physics import ScalarPotentialMLP

    optimizer = HNN(field=PortHamiltonianField(ScalarPotentialMLP(1)))
    with pytest.raises(RuntimeError, match="ScalarPotentialMLP.*eager mode"):
        optimizer.compile_step()
    assert "step" not in optimizer.__dict__
    assert use_compile(None, "paper", [optimizer]) is False   # auto mode stays eager


@needs_compiler
def test_a_forced_compile_mode_runs_and_matches_eager():
    """The mode a GPU's evaluation steps use (CUDA graphs there; plain compilation on the CPU)."""
    gen = torch.Generator().manual_seed(0)
    params, grad = torch.randn(2, 30, generator=gen), torch.randn(2, 30, generator=gen)
    optimizer = paper_optimizer("quadratic", "hnn", seed=1)
    state = optimizer.init_state(params, (30,))
    with torch.no_grad():
        expected = optimizer.step(params, grad, state)[0]
        compiled = optimizer.compile_step(mode="reduce-overhead").step
        assert compiled.mode_for(params) == "reduce-overhead"
        torch.testing.assert_close(compiled(params, grad, state)[0], expected, rtol=1e-5,
                                   atol=1e-7)
    assert set(compiled.compiled) == {"reduce-overhead"}
    # unforced, a CPU step uses the default mode with or without meta-gradients
    assert optimizer.compile_step().step.mode_for(params) is None
