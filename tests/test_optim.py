"""``phys_l2o.optim``: the learned optimizer as a ``torch.optim.Optimizer``, and ModuleTask."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from phys_l2o import HNN, LSTMOptimizer, ModuleTask, Schedule, evaluate, meta_train, spec_of
from phys_l2o.optim import LearnedOptim, from_pretrained, pretrained_info, pretrained_names
from phys_l2o.optimizers import compile_available
from phys_l2o.seeding import make_generator


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))


def toy_task(steps: int = 12) -> ModuleTask:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=gen)
    y = (x[:, :3].argmax(-1)).long()
    return ModuleTask(mlp, x, y, batch_size=16, steps=steps)


def trained(name: str):
    torch.manual_seed(1)
    if name == "hnn":
        return HNN(out_mul=0.05)
    if name == "hnn-pre":
        return HNN(preprocessing=True, normalize=False, out_mul=0.05)
    if name == "hnn-param":
        from phys_l2o import build
        return build({"type": "hnn-param", "lr": 0.1, "correction_hidden": 3, "control": True})
    return LSTMOptimizer(preprocessing=True, out_mul=0.05)


def drive(optimizer, task, problems, steps, **defaults):
    """The drop-in on one problem of ``task``: a real model, backward, step."""
    model = task.model_factory()
    with torch.no_grad():
        for p, value in zip(model.parameters(), task.unpack(problems["params"]).values()):
            p.copy_(value[0])
    opt = LearnedOptim(model.parameters(), optimizer, **defaults)
    losses = []
    for t in range(steps + 1):
        x, y = task.minibatch(problems, t)
        opt.zero_grad()
        loss = task.loss_fn(model(x[0]), y[0])
        loss.backward()
        if t > 0:
            losses.append(loss.detach())
        if t < steps:
            opt.step()
    return torch.stack(losses), model, opt


@pytest.mark.parametrize("name", ["hnn", "hnn-pre", "lstm", "hnn-param"])
def test_same_steps_as_the_functional_path(name):
    task = toy_task()
    problems = task.sample(1, make_generator(0, "test"))
    optimizer = trained(name)
    curve = evaluate(optimizer, task, problems, 10)[0]
    losses, _, _ = drive(optimizer, task, problems, 10)
    torch.testing.assert_close(losses, curve, rtol=1e-5, atol=1e-6)


def test_lr_scales_the_step_and_schedulers_work():
    task = toy_task()
    problems = task.sample(1, make_generator(0, "test"))
    optimizer = trained("hnn")
    model = task.model_factory()
    opt = LearnedOptim(model.parameters(), optimizer)
    assert opt.param_groups[0]["lr"] == 0.05 == opt.trained_lr
    x, y = task.minibatch(problems, 0)
    start = [p.detach().clone() for p in model.parameters()]

    def update(lr):
        with torch.no_grad():
            for p, s in zip(model.parameters(), start):
                p.copy_(s)
        opt.state.clear()
        opt.param_groups[0]["lr"] = lr
        opt.zero_grad()
        task.loss_fn(model(x[0]), y[0]).backward()
        opt.step()
        return torch.cat([(p - s).reshape(-1) for p, s in zip(model.parameters(), start)])

    torch.testing.assert_close(update(0.1), 2 * update(0.05))
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    opt.step()
    scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)


def test_a_group_with_lr_zero_is_frozen_and_its_state_still_advances():
    """torch.optim's convention: lr 0.0 is allowed (a frozen group, a warm-up from zero)."""
    task = toy_task()
    problems = task.sample(1, make_generator(0, "test"))
    model = task.model_factory()
    opt = LearnedOptim(model.parameters(), trained("hnn"), lr=0.0)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = task.minibatch(problems, 0)
    for _ in range(2):
        opt.zero_grad()
        task.loss_fn(model(x[0]), y[0]).backward()
        opt.step()
        assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    states = [opt.state[p]["q_dot"] for p in model.parameters()]
    assert any(s.abs().max() > 0 for s in states)          # the carried q_dot moved
    opt.param_groups[0]["lr"] = 0.05                          # warm-up: the group moves now
    opt.step()
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_state_dict_resumes_exactly():
    task = toy_task(steps=12)
    problems = task.sample(1, make_generator(0, "test"))
    straight, model_a, _ = drive(trained("lstm"), task, problems, 12)
    # six steps, save, then a fresh model and optimizer resume from the saved state
    _, model_b, opt_b = drive(trained("lstm"), task, problems, 6)
    saved_model, saved_opt = model_b.state_dict(), opt_b.state_dict()
    model_c = task.model_factory()
    model_c.load_state_dict(saved_model)
    opt_c = LearnedOptim(model_c.parameters(), trained("lstm"))
    opt_c.load_state_dict(saved_opt)
    for t in range(6, 12):
        x, y = task.minibatch(problems, t)
        opt_c.zero_grad()
        task.loss_fn(model_c(x[0]), y[0]).backward()
        opt_c.step()
    for a, c in zip(model_a.parameters(), model_c.parameters()):
        torch.testing.assert_close(a, c, rtol=0, atol=0)


def test_groups_skips_closures_and_refusals():
    torch.manual_seed(0)
    a, b, frozen = nn.Linear(3, 2), nn.Linear(2, 1), nn.Linear(2, 2)
    opt = LearnedOptim([{"params": a.parameters()}, {"params": b.parameters(), "lr": 0.01},
                        {"params": frozen.parameters()}], trained("hnn"))
    before = [p.detach().clone() for p in frozen.parameters()]

    def closure():
        opt.zero_grad()
        loss = b(torch.tanh(a(torch.randn(4, 3)))).square().mean()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.ndim == 0 and len(opt.state) == 4            # a's and b's tensors, not frozen's
    assert all(torch.equal(p, q) for p, q in zip(frozen.parameters(), before))
    assert not any(w.requires_grad for w in opt.network.parameters())
    emb = nn.Embedding(5, 2, sparse=True)
    sparse = LearnedOptim(emb.parameters(), trained("hnn"))
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        sparse.step()
    for bad in (-1.0, float("nan"), float("inf"), True, "0.1"):
        with pytest.raises(ValueError, match="lr must be a finite number >= 0"):
            LearnedOptim(a.parameters(), trained("hnn"), lr=bad)
    with pytest.raises(TypeError, match="only 'lr' and 'weight_decay'"):
        LearnedOptim(a.parameters(), trained("hnn"), momentum=0.9)
    module = trained("hnn")
    wrapped = LearnedOptim(a.parameters(), module.compiled()) if compile_available() else None
    assert wrapped is None or wrapped.network is not module   # a frozen copy of the module
    with pytest.raises(FileNotFoundError, match="neither a pretrained name"):
        LearnedOptim(a.parameters(), "no-such-optimizer")


def test_every_pretrained_optimizer_loads_and_its_spec_rebuilds_it():
    from phys_l2o import build
    from phys_l2o.optim import load_pretrained

    names = pretrained_names()
    assert {"hnn-quadratic", "lstm-quadratic", "hnn-mnist", "lstm-mnist", "hnn-general",
            "mlp-general"} <= set(names)
    for name in names:
        info = pretrained_info(name)
        optimizer = load_pretrained(name)
        assert spec_of(optimizer) == info["spec"] == spec_of(build(info["spec"]))
        assert optimizer.num_params() == info["params"]
        for key in ("command", "commit", "seed", "validation_loss", "test"):
            assert info[key] is not None, (name, key)
        assert info["horizon"] == info["schedule"]["steps"] > 0
        model = nn.Linear(3, 2)
        opt = from_pretrained(name, model.parameters())
        model(torch.randn(4, 3)).square().mean().backward()
        opt.step()
        assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(ValueError, match="hnn-mnist"):
        pretrained_info("hnn-cifar")


def small_cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 5, stride=3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 10))


def test_meta_training_on_a_small_cnn_lowers_the_validation_loss(mnist_test_only_root):
    from phys_l2o.tasks import load_mnist

    digits = load_mnist(mnist_test_only_root, download=False)
    task = ModuleTask(small_cnn, digits.images.view(-1, 1, 28, 28), digits.labels,
                      batch_size=32, steps=20)
    torch.manual_seed(0)
    hnn = HNN(preprocessing=True, normalize=False, out_mul=0.01)
    schedule = Schedule(epochs=2, trajectories=3, meta_batch=2, steps=20, unroll=5,
                        meta_lr=0.01, validation_problems=4)
    result = meta_train(hnn, task, schedule, seed=0, progress=False)
    assert result.skipped_updates == 0 and result.best_epoch > 0
    assert result.best_validation < 0.95 * result.history[0]["validation"]


@pytest.mark.parametrize("name", ["hnn", "lstm"])
def test_a_parameter_that_gets_its_first_gradient_later_starts_from_fresh_state(name):
    """Each parameter tensor is its own segment: in a group, ``a`` (stepped twice) and ``b``
    (first stepped at the second step) move as they would alone."""
    gen = torch.Generator().manual_seed(0)
    a, b = (nn.Parameter(torch.randn(n, generator=gen)) for n in (5, 3))
    grads_a = [torch.randn(5, generator=gen) for _ in range(2)]
    grad_b = torch.randn(3, generator=gen)
    alone = [nn.Parameter(a.detach().clone()), nn.Parameter(b.detach().clone())]
    opt = LearnedOptim([a, b], trained(name))
    a.grad = grads_a[0]
    opt.step()                                   # b has no gradient yet: skipped
    assert len(opt.state) == 1
    a.grad, b.grad = grads_a[1], grad_b
    opt.step()
    opt_a, opt_b = LearnedOptim([alone[0]], trained(name)), LearnedOptim([alone[1]],
                                                                         trained(name))
    for g in grads_a:
        alone[0].grad = g
        opt_a.step()
    alone[1].grad = grad_b
    opt_b.step()
    torch.testing.assert_close(a, alone[0])
    torch.testing.assert_close(b, alone[1])


def linear_regression(bias: bool = True, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 5, generator=gen)
    y = x @ (0.3 * torch.randn(5, 1, generator=gen)) + (0.3 if bias else 0.0)
    torch.manual_seed(seed)
    return nn.Linear(5, 1, bias=bias), x, y


def fit(model, opt, x, y, steps=100):
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return torch.tensor(losses)


@pytest.mark.parametrize("name", ["hnn-quadratic", "lstm-quadratic", "hnn-mnist", "lstm-mnist",
                                  "hnn-general", "mlp-general"])
def test_linear_regression_with_a_bias_converges_with_every_shipped_optimizer(name):
    """A one-element bias is normalized with the other small tensors, never on its own: the
    paper's quadratic HNN once gave it a velocity of exactly +-1, and the loss rose."""
    model, x, y = linear_regression()
    losses = fit(model, from_pretrained(name, model.parameters()), x, y)
    assert losses[-10:].mean() < 0.1 * losses[0], losses[::10]
    plain, x, y = linear_regression(bias=False)
    without = fit(plain, from_pretrained(name, plain.parameters()), x, y)
    assert losses[-10:].mean() < 3 * without[-10:].mean() + 1e-3  # the bias costs little


def test_small_tensors_are_normalized_together():
    from phys_l2o.optim import normalization_order

    network = trained("hnn")                                    # normalizes per tensor
    big, one, two, other = (torch.zeros(n) for n in (6, 1, 1, 3))
    order, segments = normalization_order([big, one, other, two], network)
    assert [p.numel() for p in order] == [6, 3, 1, 1] and segments == [6, 3, 2]
    order, segments = normalization_order([big, one], network)   # a pool of one joins `big`
    assert segments == [7]
    assert normalization_order([big, one], trained("lstm"))[1] == [6, 1]   # coordinatewise


def test_weight_decay_is_decoupled_and_unknown_group_options_are_refused():
    model, x, y = linear_regression()
    start = [p.detach().clone() for p in model.parameters()]
    plain = LearnedOptim(model.parameters(), trained("hnn"))
    fit(model, plain, x, y, steps=1)
    moved = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p, s in zip(model.parameters(), start):
            p.copy_(s)
    decayed = LearnedOptim(model.parameters(), trained("hnn"), weight_decay=0.5)
    fit(model, decayed, x, y, steps=1)
    lr = decayed.param_groups[0]["lr"]
    for p, s, m in zip(model.parameters(), start, moved):
        # AdamW's order: theta * (1 - lr * wd), then the learned step (taken at the decayed
        # parameters, which this network does not read)
        torch.testing.assert_close(p, m - lr * 0.5 * s)
    for group in ({"params": model.parameters(), "momentum": 0.9},
                  {"params": model.parameters(), "betas": (0.9, 0.99)}):
        with pytest.raises(TypeError, match="refused, never ignored"):
            LearnedOptim([group], trained("hnn"))
    for bad in (-0.1, float("nan"), "0.1"):
        with pytest.raises(ValueError, match="weight_decay must be"):
            LearnedOptim(model.parameters(), trained("hnn"), weight_decay=bad)


def test_past_its_horizon_it_warns_once():
    from phys_l2o.optim import HorizonWarning

    assert pretrained_info("hnn-mnist")["horizon"] == 100
    model, x, y = linear_regression()
    opt = from_pretrained("hnn-mnist", model.parameters())
    assert opt.horizon == 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(model, opt, x, y, steps=100)
    with pytest.warns(HorizonWarning, match="meta-trained for 100 steps"):
        fit(model, opt, x, y, steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # once
        fit(model, opt, x, y, steps=3)
    assert LearnedOptim(model.parameters(), trained("hnn")).horizon is None
    assert LearnedOptim(model.parameters(), "hnn-mnist", horizon=0).horizon == 0   # off


@pytest.mark.parametrize("name", ["hnn-pre", "lstm"])
def test_chunked_steps_equal_one_step(name, monkeypatch):
    import phys_l2o.optim

    task = toy_task()
    problems = task.sample(1, make_generator(0, "test"))
    whole, _, _ = drive(trained(name), task, problems, 6)
    monkeypatch.setattr(phys_l2o.optim, "CHUNK", 7)               # 35 coordinates: 5 chunks
    chunked, _, opt = drive(trained(name), task, problems, 6)
    assert opt.network.coordinatewise
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


def test_precision_empty_and_complex_parameters():
    model, x, y = linear_regression()
    model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1e-10)                           # values that float32 cannot hold
    start = [p.detach().clone() for p in model.parameters()]
    empty = nn.Parameter(torch.zeros(0))
    empty.grad = torch.zeros(0)
    opt = LearnedOptim([*model.parameters(), empty], trained("hnn"))
    fit(model, opt, x.double(), y.double(), steps=1)
    for p, s in zip(model.parameters(), start):
        assert p.dtype == torch.float64
        # the step is rounded to float32, the parameter keeps its precision
        assert ((p - s) - (p - s).float().double()).abs().max() < 1e-9
        assert not torch.equal(p, p.float().double())
    z = nn.Parameter(torch.randn(3, dtype=torch.complex64))
    z.grad = torch.ones_like(z)
    with pytest.raises(RuntimeError, match="complex parameters"):
        LearnedOptim([z], trained("hnn")).step()


@pytest.mark.skipif(not compile_available(), reason="torch.compile needs a C++ compiler")
def test_compiled_group_steps_agree_with_eager(monkeypatch):
    import phys_l2o.optim

    task = toy_task()
    problems = task.sample(1, make_generator(0, "test"))
    eager, _, plain = drive(trained("hnn-pre"), task, problems, 4, compile=False)
    monkeypatch.setattr(phys_l2o.optim, "COMPILE_FROM", 1)
    compiled, _, opt = drive(trained("hnn-pre"), task, problems, 4)
    assert opt.compiled and not plain.compiled
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


def test_a_state_of_another_optimizer_is_refused():
    model = nn.Linear(3, 2)
    adam = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).square().mean().backward()
    adam.step()
    opt = LearnedOptim(model.parameters(), trained("hnn"))
    with pytest.raises(ValueError, match="not written by a LearnedOptim with this network"):
        opt.load_state_dict(adam.state_dict())
    lstm = LearnedOptim(model.parameters(), trained("lstm"))
    lstm.step()
    with pytest.raises(ValueError, match=r"holds \['c0', 'c1', 'h0', 'h1'\]"):
        opt.load_state_dict(lstm.state_dict())
    opt.step()
    saved = opt.state_dict()
    other = LearnedOptim(nn.Linear(3, 5).parameters(), trained("hnn"))
    with pytest.raises(ValueError, match="wrong shapes"):
        other.load_state_dict(saved)
    opt.load_state_dict(saved)                                   # its own loads


def test_module_task_refuses_what_would_fail_at_the_first_loss():
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    with pytest.raises(TypeError, match="a function that builds a fresh model"):
        ModuleTask(nn.Linear(4, 3), x, y, batch_size=8)
    with pytest.raises(TypeError, match="inputs must be a tensor"):
        ModuleTask(lambda: nn.Linear(4, 3), x.tolist(), y, batch_size=8)
    with pytest.raises(ValueError, match=r"cannot take the data \(inputs \(32, 4\)"):
        ModuleTask(lambda: nn.Linear(5, 3), x, y, batch_size=8)         # wrong width
    with pytest.raises(ValueError, match="cannot take the data"):
        ModuleTask(lambda: nn.Linear(4, 3), x, y.float(), batch_size=8)  # float class labels
    with pytest.raises(ValueError, match="one number per minibatch"):
        ModuleTask(lambda: nn.Linear(4, 3), x, y, batch_size=8,
                   loss=lambda out, t: F.cross_entropy(out, t, reduction="none"))
    assert ModuleTask(lambda: nn.Linear(4, 3), x, y, batch_size=8).num_coords == 15


def test_a_pretrained_file_outside_the_package_or_changed_is_refused(monkeypatch):
    import phys_l2o.pretrained as pretrained

    good = pretrained._manifest()["hnn-mnist"]
    cases = {"../../etc/passwd": "a plain file name inside the package",
             "/tmp/x.pt": "a plain file name inside the package",
             "no-such.pt": "missing from the package"}
    for file, message in cases.items():
        monkeypatch.setattr(pretrained, "_manifest", lambda f=file: {"x": {**good, "file": f}})
        with pytest.raises(pretrained.PretrainedError, match=message):
            pretrained.load_pretrained("x")
    monkeypatch.setattr(pretrained, "_manifest",
                        lambda: {"x": {**good, "sha256": "0" * 64}})
    with pytest.raises(pretrained.PretrainedError, match="do not match the SHA-256"):
        pretrained.load_pretrained("x")
    monkeypatch.undo()
    assert pretrained.load_pretrained("hnn-mnist").num_params() == 55   # the shipped one checks
