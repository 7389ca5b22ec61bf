"""The held-out task families: MNIST models, tabular data, sequences, conditioned quadratics."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from phys_l2o import build, spec_of
from phys_l2o.tasks import (
    ConditionedQuadraticTask,
    ModuleTask,
    QuadraticTask,
    Task,
    load_mnist,
    module,
)
from phys_l2o.tasks.mnist_data import split_pools
from phys_l2o.tasks.sequence import most_frequent

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# (spec, learning rate of plain gradient descent); small minibatches keep the file fast
FAMILIES = [
    ({"type": "mnist-mlp", "hidden": 8, "depth": 2, "batch_size": 16, "steps": 30}, 0.1),
    ({"type": "mnist-cnn", "channels": 4, "batch_size": 16, "steps": 30}, 0.1),
    ({"type": "mnist-autoencoder", "hidden": 8, "batch_size": 16, "steps": 30}, 1.0),
    ({"type": "tabular", "dataset": "wine", "hidden": 8, "activation": "tanh",
      "batch_size": 16, "steps": 30}, 0.1),
    ({"type": "tabular", "dataset": "breast_cancer", "batch_size": 16, "steps": 30}, 0.1),
    ({"type": "tabular", "dataset": "diabetes", "hidden": 8, "batch_size": 16, "steps": 30}, 0.05),
    ({"type": "tabular", "dataset": "digits", "batch_size": 16, "steps": 30}, 0.1),
    ({"type": "sequence", "hidden": 8, "batch_size": 16, "steps": 30, "examples": 256,
      "heldout_examples": 64}, 0.3),
    ({"type": "sequence", "model": "attention", "hidden": 8, "batch_size": 16, "steps": 30,
      "examples": 256, "heldout_examples": 64}, 0.3),
    ({"type": "conditioned-quadratic", "dim": 10, "condition": 50.0}, 0.004),
]
IDS = [f"{spec['type']}-{spec.get('dataset', spec.get('model', ''))}" for spec, _ in FAMILIES]


#: tiny models: one thread avoids the cost of thread sync on a shared CPU (conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


def make(spec: dict, mnist_root: Path) -> Task:
    """Build a family from its spec; the MNIST ones on the fake digits of the fixture."""
    context = {"data_root": mnist_root, "download": False} if spec["type"].startswith(
        "mnist") else {}
    return build(spec, "task", **context)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module", params=FAMILIES, ids=IDS)
def family(request, mnist_test_only_root):
    spec, lr = request.param
    return make(spec, mnist_test_only_root), spec, lr


def test_spec_round_trips_and_describe(family, mnist_test_only_root):
    task, spec, _ = family
    written = spec_of(task)
    assert written == {**written, **spec}
    again = make(written, mnist_test_only_root)
    assert spec_of(again) == written and again.segments == task.segments
    assert again.name == task.name and task.name != "task"
    info = task.describe()
    assert info["name"] == task.name and all(info[k] == v for k, v in spec.items() if k in info)
    key = next(k for k in spec if k != "type")
    with pytest.raises(AttributeError, match="cannot change"):
        setattr(task, key, spec[key])                               # options are fixed


def test_sample_is_deterministic_per_seed(family):
    task = family[0]
    a, b, c = (task.sample(3, generator(s)) for s in (0, 0, 1))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert not torch.equal(task.init_params(a), task.init_params(c)) or "W" in a


def test_loss_and_grad_and_final_losses(family):
    task, spec, _ = family
    problems = task.sample(2, generator(0))
    params = task.init_params(problems)
    assert params.shape == (2, task.num_coords)
    loss, grad = task.loss_and_grad(params, problems, 0)
    assert loss.shape == (2,) and grad.shape == params.shape
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all() and grad.abs().sum() > 0
    final = task.final_losses(params.requires_grad_(True), problems)
    data = isinstance(task, ModuleTask)
    assert set(final) == ({"train", "heldout"} if data else {"train"})
    for value in final.values():
        assert value.shape == (2,) and not value.requires_grad and torch.isfinite(value).all()


def test_gradient_descent_lowers_the_training_loss(family):
    task, _, lr = family
    problems = task.sample(2, generator(0))
    params = task.init_params(problems)
    before = task.final_losses(params, problems)
    for t in range(30):
        params = params - lr * task.loss_and_grad(params, problems, t)[1]
    after = task.final_losses(params, problems)
    assert (after["train"] < before["train"]).all(), (before, after)
    if "heldout" in after:
        assert after["heldout"].mean() < before["heldout"].mean()


def test_gradient_matches_finite_differences():
    task = build({"type": "tabular", "dataset": "wine", "hidden": 4, "activation": "tanh",
                  "batch_size": 16, "steps": 3}, "task")
    problems = task.sample(1, generator(4))
    params = task.init_params(problems)
    _, grad = task.loss_and_grad(params, problems, 1)
    eps = 1e-2
    for i in (0, task.num_coords - 1):
        step = torch.zeros_like(params)
        step[0, i] = eps
        numeric = (task.loss(params + step, problems, 1) - task.loss(params - step, problems, 1))
        assert float(numeric / (2 * eps)) == pytest.approx(float(grad[0, i]), rel=2e-2, abs=1e-3)


def test_final_losses_are_whole_data_losses_in_chunks(monkeypatch):
    task = build({"type": "tabular", "dataset": "wine", "batch_size": 16}, "task")
    assert task.eval_examples >= len(task.inputs)                   # scores every example
    problems = task.sample(3, generator(0))
    params = task.init_params(problems)
    whole = task.final_losses(params, problems)
    for b in range(3):
        weights = {k: v[b] for k, v in task.unpack(params).items()}
        for key, (x, y) in (("train", (task.inputs, task.targets)), ("heldout", task.heldout)):
            expected = F.cross_entropy(functional_call(task.template, weights, (x,)), y)
            assert float(whole[key][b]) == pytest.approx(float(expected), rel=1e-5)
    monkeypatch.setattr(module, "EVAL_CHUNK", 7)                    # 2 examples at a time
    chunked = task.final_losses(params, problems)
    for key in whole:
        torch.testing.assert_close(chunked[key], whole[key])


def test_mnist_families_train_on_one_pool_and_hold_out_the_other(mnist_test_only_root):
    task = make({"type": "mnist-mlp", "batch_size": 16}, mnist_test_only_root)
    digits = load_mnist(mnist_test_only_root, download=False)
    train, test = split_pools(len(digits))
    assert torch.equal(task.inputs, digits.images[train])
    assert torch.equal(task.heldout[1], digits.labels[test])
    assert task.name == "mnist-mlp-relu-1x32"
    info = task.describe()
    assert info["data_split"] == "test" and info["data_note"] and info["heldout_pool"] == "test"
    cnn = make({"type": "mnist-cnn", "batch_size": 16}, mnist_test_only_root)
    assert cnn.num_coords == 5386 and cnn.inputs.shape[1:] == (1, 28, 28)
    autoencoder = make({"type": "mnist-autoencoder", "batch_size": 16}, mnist_test_only_root)
    assert autoencoder.targets is autoencoder.inputs


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(),
                    reason="no real MNIST in the shared data folder")
def test_mnist_cnn_on_real_digits():
    task = build({"type": "mnist-cnn"}, "task", data_root=SHARED_DATA, download=False)
    problems = task.sample(2, generator(0))
    final = task.final_losses(task.init_params(problems), problems)
    assert task.num_coords == 5386
    assert ((final["train"] - math.log(10)).abs() < 0.1).all()    # about chance


def test_sequence_targets_are_the_most_frequent_token():
    tokens = torch.tensor([[0, 1, 1, 2], [3, 3, 2, 2], [1, 0, 2, 3]])
    assert most_frequent(tokens, 4).tolist() == [1, 2, 0]
    task = build({"type": "sequence", "examples": 128, "heldout_examples": 32}, "task")
    assert task.inputs.shape == (128, 10, 4) and task.heldout[0].shape == (32, 10, 4)
    assert torch.equal(task.targets, most_frequent(task.inputs.argmax(-1), 4))


@pytest.mark.parametrize("condition", [1.0, 10.0, 100.0, 1e4])
def test_conditioned_quadratic_has_the_asked_condition_number(condition):
    task = ConditionedQuadraticTask(dim=12, condition=condition)
    problems = task.sample(3, generator(0))
    w = problems["W"].double()
    eigenvalues = torch.linalg.eigvalsh(2 * w.transpose(1, 2) @ w)
    ratio = eigenvalues[:, -1] / eigenvalues[:, 0]
    torch.testing.assert_close(ratio, torch.full_like(ratio, condition), rtol=1e-3, atol=0)
    params = torch.randn(3, 12, generator=generator(1))
    loss, grad = task.loss_and_grad(params, problems, 0)
    auto = Task.loss_and_grad(task, params, problems, 0)[1]        # autograd through the loss
    torch.testing.assert_close(grad, auto, rtol=1e-4, atol=1e-4)
    assert set(task.final_losses(params, problems)) == {"train"}
    torch.testing.assert_close(task.final_losses(params, problems)["train"], loss)


def test_plain_quadratic_final_losses_and_the_base_refusal():
    task = QuadraticTask(dim=5)
    problems = task.sample(2, generator(0))
    final = task.final_losses(task.init_params(problems), problems)
    assert set(final) == {"train"} and final["train"].shape == (2,)

    class Bare(Task):
        pass

    with pytest.raises(NotImplementedError, match="Bare"):
        Bare().final_losses(torch.zeros(1, 1), {})


@pytest.mark.parametrize("spec, message", [
    ({"type": "mnist-mlp", "hidden": 0}, "hidden"),
    ({"type": "mnist-mlp", "depth": 0}, "depth"),
    ({"type": "mnist-mlp", "activation": "nope"}, "unknown activation"),
    ({"type": "mnist-cnn", "channels": 2.5}, "channels"),
    ({"type": "mnist-autoencoder", "batch_size": 0}, "batch_size"),
    ({"type": "mnist-cnn", "batch_size": 10_000}, "fewer than a minibatch"),
    ({"type": "tabular", "dataset": "iris"}, "breast_cancer"),
    ({"type": "tabular", "dataset": "wine", "heldout_fraction": 1.0}, "heldout_fraction"),
    ({"type": "tabular", "dataset": "wine", "hidden": -1}, "hidden"),
    ({"type": "tabular", "dataset": "wine", "steps": 0}, "steps"),
    ({"type": "sequence", "model": "lstm"}, "attention"),
    ({"type": "sequence", "vocab": 1}, "vocab"),
    ({"type": "sequence", "length": 0}, "length"),
    ({"type": "sequence", "examples": 8}, "fewer than a minibatch"),
    ({"type": "conditioned-quadratic", "condition": 0.5}, "condition"),
    ({"type": "conditioned-quadratic", "condition": float("inf")}, "condition"),
    ({"type": "conditioned-quadratic", "dim": 1, "condition": 10.0}, "dim >= 2"),
])
def test_bad_options_are_refused(spec, message, mnist_test_only_root):
    with pytest.raises(ValueError, match=message):
        make(spec, mnist_test_only_root)


def test_module_task_refuses_bad_heldout_data():
    x, y = torch.zeros(8, 3), torch.zeros(8, dtype=torch.long)
    with pytest.raises(ValueError, match="held-out"):
        ModuleTask(lambda: torch.nn.Linear(3, 2), x, y, batch_size=4, heldout=(x, y[:5]))
    with pytest.raises(ValueError, match="eval_examples"):
        ModuleTask(lambda: torch.nn.Linear(3, 2), x, y, batch_size=4, eval_examples=0)
