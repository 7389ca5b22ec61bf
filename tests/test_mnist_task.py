"""The MNIST task: data loading (on a small idx fixture), batched MLPs, learning on it."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TEST_DIGITS, TRAIN_DIGITS, fake_digits, write_idx, write_split
from torch import nn

from phys_l2o import build
from phys_l2o.meta import Schedule, evaluate, meta_train
from phys_l2o.meta.estimators import truncated_rollout
from phys_l2o.optimizers import HNN, LSTMOptimizer
from phys_l2o.tasks import (
    MNISTTask,
    Task,
    load_mnist,
    make_activation,
    mnist,
    mnist_data,
    resolve_data_root,
    select,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


#: tiny models: one thread avoids the cost of thread sync on a shared CPU (conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def full_root(tmp_path_factory) -> Path:
    """Both splits (the training split uncompressed, as torchvision leaves it after download)."""
    root = tmp_path_factory.mktemp("mnist-full")
    write_split(root, "train", TRAIN_DIGITS, seed=1, compress=False)
    write_split(root, "t10k", TEST_DIGITS, seed=2)
    return root


@pytest.fixture(scope="module")
def test_only_root(tmp_path_factory) -> Path:
    """Only the (gzipped) test split, like the offline data folder."""
    root = tmp_path_factory.mktemp("mnist-test-only")
    write_split(root, "t10k", TEST_DIGITS, seed=2)
    return root


@pytest.fixture(scope="module")
def task(test_only_root) -> MNISTTask:
    """A small, fast sigmoid task on the fixture (hidden 8, batches of 32)."""
    return MNISTTask("sigmoid", hidden=8, steps=200, batch_size=32, data_root=test_only_root,
                     download=False)


# ----------------------------------------------------------------------------- data


def test_training_split_is_shuffled_and_halved(full_root):
    images, labels = fake_digits(TRAIN_DIGITS, seed=1)
    train = MNISTTask(data_root=full_root, download=False)
    test = MNISTTask("relu", pool="test", data_root=full_root, download=False)
    assert train.data_split == test.data_split == "train" and train.data_note is None
    assert train.pool_size == test.pool_size == TRAIN_DIGITS // 2
    pools = torch.cat([train.pool_indices, test.pool_indices])
    assert torch.equal(pools.sort().values, torch.arange(TRAIN_DIGITS))
    assert not torch.equal(pools, torch.arange(TRAIN_DIGITS))          # shuffled
    digits = load_mnist(full_root, download=False)
    assert digits.images.shape == (TRAIN_DIGITS, 784) and digits.images.dtype == torch.float32
    assert digits.labels.dtype == torch.int64
    assert 0.0 <= float(digits.images.min()) and float(digits.images.max()) <= 1.0
    assert torch.equal(digits.images, torch.from_numpy(images).reshape(-1, 784).float() / 255)
    assert torch.equal(digits.labels, torch.from_numpy(labels).long())
    for task, pool in ((train, train.pool_indices), (test, test.pool_indices)):
        batches = task.sample(2, torch.Generator().manual_seed(0))["batches"]
        assert batches.shape == (2, 101, 128)
        assert torch.isin(batches, pool).all()


def test_test_split_alone_is_halved_with_a_note(test_only_root):
    train = MNISTTask(data_root=test_only_root, download=False, batch_size=64)
    test = MNISTTask(pool="test", data_root=test_only_root, download=False, batch_size=64)
    assert train.data_split == "test"
    assert train.data_note is not None and "only the MNIST test split (300 digits)" in \
        train.data_note and "50/50" in train.data_note
    assert train.describe()["data_note"] == train.data_note
    assert train.pool_size + test.pool_size == TEST_DIGITS
    assert not set(train.pool_indices.tolist()) & set(test.pool_indices.tolist())
    x, labels = test.minibatch(test.sample(1, torch.Generator().manual_seed(0)), 0)
    digits = load_mnist(test_only_root, download=False)
    index = test.sample(1, torch.Generator().manual_seed(0))["batches"][0, 0]
    assert torch.equal(x[0], digits.images[index]) and torch.equal(labels[0], digits.labels[index])


def test_loading_is_cached_per_root_and_device(test_only_root):
    first = load_mnist(test_only_root, download=False)
    assert load_mnist(test_only_root, download=False) is first
    a = MNISTTask(data_root=test_only_root, download=False, batch_size=64)
    b = MNISTTask("relu", pool="test", data_root=test_only_root, download=False, batch_size=64)
    device = a.sample(1, torch.Generator())["batches"].device
    assert a._data(device).pixels is b._data(device).pixels is first.pixels


def test_missing_data_names_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        assert name in message
    assert "PHYS_L2O_DATA" in message and "--data-root" in message and "internet" in message


def test_failed_download_falls_back_to_the_test_split(tmp_path, monkeypatch):
    write_split(tmp_path, "t10k", TEST_DIGITS, seed=2)

    def offline(root):
        raise RuntimeError("Error downloading:\n<urlopen error no network>")

    monkeypatch.setattr(mnist_data, "_download", offline)
    digits = load_mnist(tmp_path, download=True)
    assert digits.split == "test" and "download failed" in digits.note


def test_download_provides_the_training_split(tmp_path, monkeypatch):
    calls = []

    def fake_download(root):
        calls.append(root)
        write_split(root, "train", TRAIN_DIGITS, seed=1)
        write_split(root, "t10k", TEST_DIGITS, seed=2)

    monkeypatch.setattr(mnist_data, "_download", fake_download)
    digits = load_mnist(tmp_path, download=True)
    assert calls == [tmp_path] and digits.split == "train" and digits.note is None
    assert len(digits) == TRAIN_DIGITS


def test_corrupt_files_give_clear_errors(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_split(tmp_path, "t10k", TEST_DIGITS, seed=2)
    gz = raw / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[: len(gz.read_bytes()) // 2])     # truncated download
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz is corrupt"):
        load_mnist(tmp_path, download=False)

    write_split(tmp_path, "t10k", TEST_DIGITS, seed=2)
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not an idx file"))
    with pytest.raises(ValueError, match="corrupt or not an MNIST idx file"):
        load_mnist(tmp_path, download=False)

    # a file with the official name and size but other bytes fails the md5 check
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(10_000, dtype=np.uint8))
    with pytest.raises(ValueError, match="md5"):
        load_mnist(tmp_path, download=False)


def test_data_root_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("PHYS_L2O_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv("PHYS_L2O_DATA")
    assert resolve_data_root() == tmp_path / "cache" / "phys-l2o"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolve_data_root() == Path.home() / ".cache" / "phys-l2o"


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(),
                    reason="the offline MNIST folder (shared/data beside the project) is absent")
def test_offline_data_folder():
    digits = load_mnist(SHARED_DATA, download=False)
    assert digits.split == "test" and len(digits) == 10_000
    assert "only the MNIST test split (10,000 digits)" in digits.note
    task = MNISTTask(data_root=SHARED_DATA, download=False)
    assert task.pool_size == 5_000 and task.data_note == digits.note
    problems = task.sample(2, torch.Generator().manual_seed(0))
    loss = task.loss(task.init_params(problems), problems, 0)
    assert torch.allclose(loss, torch.full((2,), math.log(10)), atol=0.2)   # untrained: ~ln 10


def test_data_names_are_importable_from_the_task_module():
    """The loading lives in ``mnist_data``; its public names stay reachable from ``mnist``."""
    defined = [name for name, value in vars(mnist_data).items() if not name.startswith("_")
               and getattr(value, "__module__", None) == mnist_data.__name__]
    constants = ["INPUTS", "CLASSES", "SPLIT_SEED", "SPLIT_PREFIX", "OFFICIAL_MD5", "OFFICIAL_SIZE"]
    assert {"MNISTDigits", "load_mnist", "read_idx", "split_pools"} <= set(defined)
    for name in defined + constants:
        assert getattr(mnist, name) is getattr(mnist_data, name), name


# ----------------------------------------------------------------------------- the nets


def test_activation_by_name():
    assert isinstance(make_activation("sigmoid"), nn.Sigmoid)
    assert isinstance(make_activation("ReLU"), nn.ReLU)
    assert isinstance(make_activation("relu"), nn.ReLU)
    assert isinstance(make_activation("leaky_relu"), nn.LeakyReLU)
    with pytest.raises(ValueError, match="sigmoid"):
        make_activation("swishy")
    with pytest.raises(ValueError):
        make_activation("softmax")          # not elementwise


def test_layout_and_segments(task):
    assert task.name == "mnist"
    assert task.segments == (8 * 784, 8, 80, 10) and task.num_coords == sum(task.segments)
    problems = task.sample(3, torch.Generator().manual_seed(0))
    assert problems["params"].shape == (3, task.num_coords)
    assert problems["batches"].shape == (3, task.steps + 1, task.batch_size)
    assert task.init_params(problems).shape == (3, task.num_coords)


@pytest.mark.parametrize("activation", ["sigmoid", "relu", "tanh", "gelu"])
def test_loss_matches_torch_nn_linear(test_only_root, activation):
    task = MNISTTask(activation, hidden=8, steps=5, batch_size=32, data_root=test_only_root,
                     download=False)
    problems = task.sample(3, torch.Generator().manual_seed(1))
    params = task.init_params(problems) * 3.0      # larger weights: saturating units too
    for step in (0, 5):
        loss = task.loss(params, problems, step)
        x, labels = task.minibatch(problems, step)
        for i in range(3):
            net = nn.Sequential(nn.Linear(784, 8), make_activation(activation), nn.Linear(8, 10))
            w1, b1, w2, b2 = params[i].split(task.segments)
            with torch.no_grad():
                net[0].weight.copy_(w1.view(8, 784))
                net[0].bias.copy_(b1)
                net[2].weight.copy_(w2.view(10, 8))
                net[2].bias.copy_(b2)
            expected = nn.functional.cross_entropy(net(x[i]), labels[i])
            torch.testing.assert_close(loss[i], expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("activation", ["sigmoid", "relu", "softplus"])
def test_batched_nets_equal_nets_one_at_a_time(test_only_root, activation):
    task = MNISTTask(activation, hidden=8, steps=5, batch_size=32, data_root=test_only_root,
                     download=False)
    problems = task.sample(4, torch.Generator().manual_seed(2))
    params = task.init_params(problems) * 2.0
    loss, grad = task.loss_and_grad(params, problems, 3)
    ref_loss, ref_grad = Task.loss_and_grad(task, params, problems, 3)   # plain autograd
    torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=1e-5)
    for i in range(4):
        one = select(problems, [i])
        loss_i, grad_i = task.loss_and_grad(params[i:i + 1], one, 3)
        torch.testing.assert_close(loss_i, loss[i:i + 1], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(grad_i, grad[i:i + 1], atol=1e-6, rtol=1e-5)


def test_loss_carries_the_gradient_for_meta_training(task):
    problems = task.sample(2, torch.Generator().manual_seed(3))
    scale = torch.tensor(1.5, requires_grad=True)
    params = task.init_params(problems) * scale
    loss, grad = task.loss_and_grad(params, problems, 1)
    assert loss.requires_grad and not grad.requires_grad
    (fast,) = torch.autograd.grad(loss.sum(), scale, retain_graph=True)
    (ref,) = torch.autograd.grad(task.loss(params, problems, 1).sum(), scale)
    torch.testing.assert_close(fast, ref, atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        loss, _ = task.loss_and_grad(params, problems, 1)
    assert not loss.requires_grad


def test_meta_gradient_equals_autograd_through_the_nets(task):
    class AutogradMNIST(MNISTTask):
        loss_and_grad = Task.loss_and_grad

    slow = AutogradMNIST.__new__(AutogradMNIST)
    slow.__dict__.update(task.__dict__)
    grads = []
    for which in (task, slow):
        torch.manual_seed(0)
        opt = HNN(preprocessing=True, normalize=False, out_mul=0.01)
        problems = task.sample(2, torch.Generator().manual_seed(4))

        def meta_step(meta_loss, opt=opt):
            grads.append(torch.autograd.grad(meta_loss, list(opt.parameters()),
                                             allow_unused=True))
            return True

        truncated_rollout(opt, which, problems, 6, 3, meta_step)
    half = len(grads) // 2
    for fast, ref in zip(grads[:half], grads[half:]):
        for a, b in zip(fast, ref):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_steps_beyond_the_problems_raise(task):
    problems = task.sample(1, torch.Generator())
    params = task.init_params(problems)
    task.loss_and_grad(params, problems, task.steps)
    with pytest.raises(IndexError, match="steps"):
        task.loss_and_grad(params, problems, task.steps + 1)


def test_same_seed_same_problems(task):
    a = task.sample(3, torch.Generator().manual_seed(7))
    b = task.sample(3, torch.Generator().manual_seed(7))
    c = task.sample(3, torch.Generator().manual_seed(8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["params"], c["params"]) and not torch.equal(a["batches"],
                                                                         c["batches"])
    first = task.sample(1, torch.Generator().manual_seed(7))     # a prefix of the same seed
    assert all(torch.equal(first[k][0], a[k][0]) for k in a)
    assert not torch.equal(a["params"][0], a["params"][1])


def test_init_matches_pytorch_default_linear(test_only_root):
    task = MNISTTask(data_root=test_only_root, download=False, batch_size=64)   # 784-20-10
    params = task.sample(4, torch.Generator().manual_seed(0))["params"]
    for chunk, fan_in in zip(params.split(task.segments, dim=1), (784, 784, 20, 20)):
        bound = 1 / math.sqrt(fan_in)
        assert float(chunk.abs().max()) <= bound
        if chunk.shape[1] > 1000:     # uniform(-b, b): mean 0, std b / sqrt(3)
            assert abs(float(chunk.mean())) < 0.02 * bound
            assert abs(float(chunk.std()) - bound / math.sqrt(3)) < 0.02 * bound
            assert float(chunk.abs().max()) > 0.99 * bound
    reference = nn.Linear(784, 20).weight.detach()
    assert abs(float(reference.abs().max()) - float(params[0, :15680].abs().max())) < 1e-3


# ----------------------------------------------------------------------------- optimizing


def test_adam_lowers_the_loss(task):
    problems = task.sample(2, torch.Generator().manual_seed(5))
    curves = evaluate(build({"type": "adam", "lr": 0.03}), task, problems, task.steps)
    assert curves.shape == (2, task.steps)
    initial = task.loss(task.init_params(problems), problems, 0)
    final = curves[:, -20:].mean(1)
    assert (final < initial).all() and float(final.mean()) < 0.5 * float(initial.mean())


def test_learned_optimizer_sizes_on_mnist():
    assert HNN(preprocessing=True, normalize=False).num_params() == 55
    assert LSTMOptimizer(preprocessing=True).num_params() == 5301


def test_meta_trained_hnn_lowers_the_loss(test_only_root):
    train = MNISTTask(hidden=8, steps=20, batch_size=32, data_root=test_only_root,
                      download=False)
    test = MNISTTask(hidden=8, steps=20, batch_size=32, pool="test", data_root=test_only_root,
                     download=False)
    torch.manual_seed(0)
    hnn = HNN(preprocessing=True, normalize=False, out_mul=0.01)
    schedule = Schedule(epochs=2, trajectories=3, meta_batch=2, steps=20, unroll=5,
                        meta_lr=0.01, validation_problems=2)
    problems = test.sample(4, torch.Generator().manual_seed(6))
    untrained = evaluate(hnn, test, problems, 20)
    result = meta_train(hnn, train, schedule, seed=0, progress=False)
    curves = evaluate(hnn, test, problems, 20)
    initial = test.loss(test.init_params(problems), problems, 0)
    assert torch.isfinite(curves).all() and result.best_epoch > 0
    assert float(curves[:, -5:].mean()) < 0.9 * float(initial.mean())
    assert float(curves[:, -5:].mean()) < float(untrained[:, -5:].mean()) - 0.1


def test_lstm_meta_trains_on_mnist(task):
    torch.manual_seed(0)
    lstm = LSTMOptimizer(preprocessing=True, out_mul=0.1)
    schedule = Schedule(epochs=1, trajectories=1, meta_batch=1, steps=4, unroll=2,
                        validation_problems=1)
    result = meta_train(lstm, task, schedule, seed=0, progress=False)
    assert result.skipped_updates == 0 and len(result.history) == 2


def test_the_checked_gz_file_is_read_before_an_uncompressed_one(tmp_path):
    images, labels = write_split(tmp_path, "t10k", TEST_DIGITS, seed=2)
    # an uncompressed labels file beside the .gz one, every label a 3
    write_idx(tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte",
              np.full(TEST_DIGITS, 3, dtype=np.uint8), compress=False)
    digits = load_mnist(tmp_path, download=False)
    assert torch.equal(digits.labels, torch.from_numpy(labels.astype(np.int64)))


def test_a_failed_download_leaves_the_data_folder_as_it_was(tmp_path, monkeypatch):
    import torchvision

    class Offline:
        def __init__(self, root, train=True, download=False):
            (Path(root) / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)  # as torchvision
            raise RuntimeError("Error downloading: <urlopen error no network>")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(FileNotFoundError, match="download failed"):
        load_mnist(root, download=True)
    assert list(root.iterdir()) == []
