"""Shared test helpers: a small MNIST folder in torchvision's layout, made of fake digits."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

TRAIN_DIGITS, TEST_DIGITS = 400, 300

if os.environ.get("PYTEST_XDIST_WORKER"):
    # the suite runs on one worker process per core (pytest-xdist): one intra-op thread
    # each, or the workers' small steps wait on each other (see phys_l2o.parallel)
    torch.set_num_threads(1)


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> None:
    """Write a uint8 array as an idx file (gzipped unless ``compress`` is false)."""
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    if compress:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def fake_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable fake digits: a random prototype per class plus noise, ``(n, 28, 28)`` uint8."""
    rng = np.random.default_rng(seed)
    prototypes = np.random.default_rng(0).integers(0, 256, size=(10, 28, 28))
    labels = rng.integers(0, 10, size=n)
    noise = rng.integers(-60, 61, size=(n, 28, 28))
    return np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8), labels.astype(np.uint8)


def write_split(root: Path, prefix: str, n: int, seed: int, compress: bool = True) -> tuple:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    images, labels = fake_digits(n, seed)
    write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress)
    write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return images, labels


@pytest.fixture(scope="session")
def mnist_test_only_root(tmp_path_factory) -> Path:
    """Only the (gzipped) fake test split, like the offline data folder."""
    root = tmp_path_factory.mktemp("mnist-fixture")
    write_split(root, "t10k", TEST_DIGITS, seed=2)
    return root


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny models: thread sync would cost more than it
    saves on a shared CPU (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
