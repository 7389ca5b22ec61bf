"""``compiled()``: the compiled step computes what the eager step computes, its wrapper leaves
the optimizer unchanged, and its switch."""

import pytest
import torch

from phys_l2o.experiments.paper import paper_optimizer, paper_schedule
from phys_l2o.experiments.training import use_compile
from phys_l2o.optimizers import base
from phys_l2o.physics import FeatureLinear

needs_compiler = pytest.mark.skipif(not base.compile_available(),
                                    reason="torch.compile needs a C++ compiler")


def unroll(optimizer, params, grads):
    """Three steps from fresh state; the updates and the gradient of their sum of squares."""
    state = optimizer.init_state(params, [params.shape[1] - 7, 7])
    x = params
    for grad in grads:
        x, state = base.advance(optimizer, x, grad, state)
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
    compiled = optimizer.compiled()
    assert isinstance(compiled, base.CompiledOptimizer) and compiled.module is optimizer
    assert "step" not in optimizer.__dict__          # the optimizer itself is unchanged
    compiled_update, compiled_grad = unroll(compiled, params, grads)
    assert eager_update.abs().max() > 0
    torch.testing.assert_close(compiled_update, eager_update, rtol=1e-4, atol=1e-7)
    for c, e in zip(compiled_grad, eager_grad):
        torch.testing.assert_close(c, e, rtol=1e-3, atol=1e-6)
    # the compiler's settings are scoped to the wrapper's calls
    assert torch._dynamo.config.recompile_limit != base.RECOMPILE_LIMIT


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
        optimizer.compiled()
    paper = paper_schedule("mnist", "hnn", "paper")
    assert use_compile(None, optimizer, paper) is False   # auto mode falls back to eager


def test_auto_compile_is_for_the_paper_budget_only():
    optimizer = paper_optimizer("quadratic", "hnn", seed=0)
    paper, smoke = (paper_schedule("quadratic", "hnn", b) for b in ("paper", "smoke"))
    assert use_compile(None, optimizer, smoke) is False
    assert use_compile(None, optimizer, paper) is base.compile_available()
    assert use_compile(True, optimizer, smoke) is True
    assert use_compile(False, optimizer, paper) is False


def test_cli_compile_switch_defaults_to_auto():
    from phys_l2o.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["reproduce", "mnist"]).compile is None
    assert parser.parse_args(["reproduce", "mnist", "--no-compile"]).compile is False
    assert parser.parse_args(["train", "--out", "x.pt", "--compile"]).compile is True


def test_a_piece_that_cannot_be_compiled_is_refused_at_once():
    from phys_l2o import HNN

    optimizer = HNN(readout={"type": "flow-readout", "flow": "dopri5"})
    with pytest.raises(RuntimeError, match="Dopri5Flow.*eager mode"):
        optimizer.compiled()
    paper = paper_schedule("quadratic", "hnn", "paper")
    assert use_compile(None, optimizer, paper) is False   # auto mode stays eager


@needs_compiler
def test_a_forced_compile_mode_runs_and_matches_eager():
    """The mode a GPU's evaluation steps use (CUDA graphs there; plain compilation on the CPU)."""
    gen = torch.Generator().manual_seed(0)
    params, grad = torch.randn(2, 30, generator=gen), torch.randn(2, 30, generator=gen)
    optimizer = paper_optimizer("quadratic", "hnn", seed=1)
    state = optimizer.init_state(params, (30,))
    with torch.no_grad():
        expected = base.advance(optimizer, params, grad, state)[0]
        compiled = optimizer.compiled(mode="reduce-overhead")
        assert compiled.mode_for(params) == "reduce-overhead"
        torch.testing.assert_close(base.advance(compiled, params, grad, state)[0], expected,
                                   rtol=1e-5, atol=1e-7)
    assert set(compiled.compiled) == {"reduce-overhead"}
    # unforced, a CPU step uses the default mode with or without meta-gradients
    assert optimizer.compiled().mode_for(params) is None
