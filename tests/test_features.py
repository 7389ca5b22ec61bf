"""Adaptive features, the HNN with features and output normalization, and the MLP control."""

import math
import warnings

import pytest
import torch
from torch import nn

import phys_l2o
from phys_l2o import HNN, ModuleTask, QuadraticTask, Schedule, build, evaluate, spec_of
from phys_l2o.meta import Population
from phys_l2o.meta.es import flat_weights
from phys_l2o.optim import LearnedOptim
from phys_l2o.optimizers import (
    AdaptiveFeatures,
    HNNState,
    MLPOptimizer,
    Segments,
    advance,
    output_normalize,
    segment_rms,
)
from phys_l2o.seeding import make_generator


def run_features(feats, grads, segments):
    """The features of every step of ``grads`` ``(steps, batch, coords)``, and the state."""
    seg = Segments.of(segments)
    state = feats.init(grads[0])
    out = []
    for g in grads:
        f, state = feats.features(g, state, seg)
        out.append(f)
    return torch.stack(out), state


def test_shapes_and_widths():
    feats = AdaptiveFeatures()
    assert feats.width == 4 and spec_of(feats)["decays"] == [0.5, 0.9, 0.99]
    params = torch.zeros(2, 7)
    assert feats.init(params).shape == (2, 7, 5)          # 3 momenta, v, the step count
    f, state = feats.features(torch.randn(2, 7), feats.init(params), Segments.of([4, 3]))
    assert f.shape == (2, 7, 4) and state.shape == (2, 7, 5)
    assert AdaptiveFeatures(decays=[0.9]).width == 2
    grad = torch.randn(2, 7)
    torch.testing.assert_close(feats(grad), feats.features(grad, feats.init(grad),
                                                           Segments.of([7])))
    with pytest.raises(ValueError, match="pass them as features"):
        HNN(preprocessing="adaptive-features")
    for bad in ({"decays": [1.0]}, {"decays": []}, {"second_decay": -0.1},
                {"prior_count": -1}, {"eps": 0}):
        with pytest.raises(ValueError):
            AdaptiveFeatures(**bad)


def test_moments_and_features_match_a_hand_computation():
    torch.manual_seed(0)
    decays, b2, eps = (0.5, 0.9), 0.99, 1e-8
    feats = AdaptiveFeatures(decays=decays, second_decay=b2, eps=eps, prior_count=0.5)
    segments = [3, 2]
    grads = torch.randn(4, 1, 5)
    out, state = run_features(feats, grads, segments)
    m, v = [torch.zeros(5) for _ in decays], torch.zeros(5)
    for t, g in enumerate(grads[:, 0], start=1):
        m = [b * mk + (1 - b) * g for b, mk in zip(decays, m)]
        v = b2 * v + (1 - b2) * g * g
        denom = ((v / (1 - b2 ** t)).sqrt() + eps)[:, None]
        raw = torch.stack([g] + [mk / (1 - b ** t) for b, mk in zip(decays, m)], -1) / denom
        expected = torch.cat([part / ((part.pow(2).sum(0) + 0.5) / (len(part) + 0.5)).sqrt()
                              for part in raw.split(segments)])
        torch.testing.assert_close(out[t - 1, 0], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state[0, :, :2], torch.stack(m, -1))
    torch.testing.assert_close(state[0, :, 2], v)
    assert (state[..., 3] == 4).all()                       # the step count


def test_per_tensor_rms_is_one_and_a_one_element_tensor_keeps_its_magnitude():
    torch.manual_seed(0)
    segments = [400, 300, 1]
    grads = torch.randn(5, 2, 701) * torch.tensor([1e-3] * 400 + [10.0] * 300 + [1.0])
    plain, _ = run_features(AdaptiveFeatures(prior_count=0.0), grads, segments)
    pooled, _ = run_features(AdaptiveFeatures(), grads, segments)
    for f, tol in ((plain, 1e-5), (pooled, 1e-2)):
        for part in f[-1].split(segments[:2] + [1], dim=1)[:2]:
            rms = part.pow(2).mean(1).sqrt()                  # (batch, width)
            torch.testing.assert_close(rms, torch.ones_like(rms), rtol=tol, atol=tol)
    # without the pooling a one-element tensor is always +-1; with it, f / sqrt((f^2 + 1) / 2)
    assert torch.allclose(plain[:, :, -1].abs(), torch.ones(1))
    bias = pooled[:, :, -1]
    assert torch.isfinite(bias).all() and (bias.abs() <= math.sqrt(2) + 1e-6).all()
    assert not torch.allclose(bias.abs(), torch.ones(1))


def test_a_one_element_bias_is_bounded_and_not_stuck():
    feats = AdaptiveFeatures()
    steps = 30
    # a weight of 10 coordinates and a one-element bias; the bias's gradient shrinks 0.8x a step
    grads = torch.randn(steps, 1, 11, generator=torch.Generator().manual_seed(0))
    grads[:, 0, 10] = 0.8 ** torch.arange(steps)
    shrinking, _ = run_features(feats, grads, [10, 1])
    g_feature = shrinking[:, 0, 10, 0]
    assert (g_feature[1:] < 1).all() and (g_feature[1:] > 0).all()
    assert (g_feature[1:].diff() < 0).all()                  # tracks the shrinking gradient
    grads[:, 0, 10] = 0.3                                    # a constant gradient
    constant, _ = run_features(feats, grads, [10, 1])
    torch.testing.assert_close(constant[:, 0, 10], torch.ones(steps, 4))   # no oscillation


def test_features_ignore_the_scale_of_a_problems_gradients():
    torch.manual_seed(0)
    grads = torch.randn(6, 2, 9)
    scaled = grads.clone()
    scaled[:, 0] *= 1000.0
    a, _ = run_features(AdaptiveFeatures(), grads, [5, 3, 1])
    b, _ = run_features(AdaptiveFeatures(), scaled, [5, 3, 1])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    zero, _ = run_features(AdaptiveFeatures(), torch.zeros(2, 1, 9), [5, 3, 1])
    assert (zero == 0).all()


def test_output_normalize_and_segment_rms():
    torch.manual_seed(0)
    seg = Segments.of([6, 3, 1])
    d = torch.randn(2, 10) * torch.tensor([100.0] * 6 + [0.01] * 3 + [5.0])
    out = output_normalize(d, seg)
    for part in out.split([6, 3, 1], dim=1):
        torch.testing.assert_close(part.pow(2).mean(1), torch.ones(2))
    assert (out.sign() == d.sign()).all()
    assert (output_normalize(torch.zeros(2, 10), seg) == 0).all()
    rms = segment_rms(d[..., None], Segments.of([10]))
    torch.testing.assert_close(rms[:, 0, 0], d.pow(2).mean(1).sqrt())


def test_the_default_hnn_is_unchanged():
    """The spec, the state and a step of fixed weights are those of the code before features."""
    assert spec_of(HNN()) == {"type": "hnn", "preprocessing": False, "out_mul": 0.001,
                              "normalize": True}
    assert spec_of(HNN(preprocessing=True, normalize=False, out_mul=0.001)) == {
        "type": "hnn", "preprocessing": True, "out_mul": 0.001, "normalize": False}
    assert spec_of(phys_l2o.optim.load_pretrained("hnn-mnist")) == {
        "type": "hnn", "preprocessing": True, "out_mul": 0.001, "normalize": False}
    expected = {
        "hnn": [[0.04552076, 0.07926378, 0.10191465, 0.09668554, 0.11348700],
                [0.11116849, 0.10920779, 0.08279459, 0.05478972, 0.12262302]],
        "hnn-pre": [[-0.12750491, -0.12129784, -0.22590736, -0.11346921, -0.23123482],
                    [-0.14708970, -0.23808223, -0.22094071, -0.23797427, -0.15270375]]}
    for name, make in (("hnn", HNN), ("hnn-pre", lambda: HNN(preprocessing=True,
                                                             normalize=False))):
        torch.manual_seed(0)
        opt = make()
        params = torch.randn(2, 5)
        state = opt.init_state(params, (3, 2))
        assert state.features is None
        assert list(opt.state_to_coordinates(opt.init_state(params[:1], (3, 2)))) == ["q_dot"]
        with torch.no_grad():
            for _ in range(3):
                update, state = opt.step(params, torch.randn(2, 5), state)
        torch.testing.assert_close(update, torch.tensor(expected[name]), rtol=1e-5, atol=1e-7)


def hnn_features():
    return HNN(features=True, normalize=False, output_norm=True)


OPTIMIZERS = {"hnn-features": hnn_features, "mlp": MLPOptimizer}


def test_parameter_counts_and_specs():
    assert hnn_features().num_params() == 181           # the paper's field and read-out, d = 4
    assert MLPOptimizer().num_params() == 171           # 4 -> 10 -> 10 -> 1
    assert MLPOptimizer(hidden=10).num_params() == 171
    assert spec_of(hnn_features()) == {"type": "hnn", "preprocessing": False, "out_mul": 0.001,
                                       "normalize": False, "features": True,
                                       "output_norm": True}
    custom = HNN(features={"type": "adaptive-features", "decays": [0.9]})
    assert custom.num_params() == 55 and build(spec_of(custom)).spec() == spec_of(custom)
    with pytest.raises(ValueError, match="leave preprocessing"):
        HNN(features=True, preprocessing=True)
    with pytest.raises(ValueError, match="stateful features"):
        MLPOptimizer(features="l2l-preprocessing")


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_contract_spec_round_trip_and_output_norm(name):
    torch.manual_seed(0)
    opt = OPTIMIZERS[name]()
    rebuilt = build(spec_of(opt))
    assert type(rebuilt) is type(opt) and spec_of(rebuilt) == spec_of(opt)
    rebuilt.load_state_dict(opt.state_dict())
    segments = (6, 3, 1)
    params, grads = torch.randn(3, 10), torch.randn(4, 3, 10)

    def run(o, p, gs):
        state = o.init_state(p, segments)
        with torch.no_grad():
            for g in gs:
                update, _ = o.step(p, g, state)
                p, state = advance(o, p, g, state)
        return p, update, state

    batched, update, state = run(opt, params, grads)
    assert batched.shape == params.shape and torch.isfinite(batched).all()
    torch.testing.assert_close(run(rebuilt, params, grads)[0], batched)
    for part in update.split(segments, dim=1):              # output_norm: RMS 1 per tensor
        torch.testing.assert_close(part.pow(2).mean(1), torch.ones(3))
    assert state.features.shape == (3, 10, 5)
    for i in range(3):
        alone = run(opt, params[i:i + 1], grads[:, i:i + 1])[0]
        torch.testing.assert_close(alone, batched[i:i + 1], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_short_meta_training_runs(name):
    torch.manual_seed(0)
    opt = OPTIMIZERS[name]()
    before = [p.detach().clone() for p in opt.parameters()]
    result = phys_l2o.meta_train(opt, QuadraticTask(5), Schedule(
        epochs=2, trajectories=4, steps=10, unroll=5, validation_problems=4), progress=False)
    assert math.isfinite(result.best_validation) and result.skipped_updates == 0
    assert all(math.isfinite(h["validation"]) for h in result.history)
    assert any(not torch.equal(a, b) for a, b in zip(before, opt.parameters()))


def toy_task() -> ModuleTask:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=gen)
    y = x[:, :3].argmax(-1)
    return ModuleTask(lambda: nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)),
                      x, y, batch_size=16, steps=12)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_learned_optim_carries_the_state_and_steps_as_the_functional_path(name):
    torch.manual_seed(1)
    optimizer = OPTIMIZERS[name]()
    task = toy_task()
    problems = task.sample(1, make_generator(0, "test"))
    curve = evaluate(optimizer, task, problems, 8, scale=0.02)[0]
    model = task.model_factory()
    with torch.no_grad():
        for p, value in zip(model.parameters(), task.unpack(problems["params"]).values()):
            p.copy_(value[0])
    opt = LearnedOptim(model.parameters(), optimizer, lr=0.02)
    losses = []
    for t in range(9):
        x, y = task.minibatch(problems, t)
        opt.zero_grad()
        loss = task.loss_fn(model(x[0]), y[0])
        loss.backward()
        losses.append(loss.detach())
        if t < 8:
            opt.step()
    for p in model.parameters():
        assert opt.state[p]["features"].shape == (p.numel(), 5)
        assert (opt.state[p]["features"][:, -1] == 8).all()  # eight steps counted
    losses = torch.stack(losses)
    assert torch.isfinite(losses).all()  # untrained weights: the same steps, not progress
    torch.testing.assert_close(losses[1:], curve, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_an_es_population_is_stepped_through_vmap(name):
    torch.manual_seed(0)
    opt, task = OPTIMIZERS[name](), QuadraticTask(dim=4)
    task.segments = (1, 3)
    problems = task.sample(3, make_generator(2, "es"))
    theta = flat_weights(opt)
    weights = theta + 0.05 * torch.randn(4, theta.numel())
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # no fallback to a loop
        batched = Population(opt, task, problems, 4).run(weights, 5)
    looped = Population(opt, task, problems, 4, vectorize=False).run(weights, 5)
    torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-6)


def test_hnn_state_keeps_its_old_fields():
    state = HNNState(torch.zeros(1, 3), Segments.of([3]))
    assert state.features is None and state._fields == ("q_dot", "segments", "features")
