"""MNIST model families: deeper MLPs, a small CNN and an autoencoder, each a :class:`ModuleTask`.

Every family trains on the digits of the MNIST ``"train"`` pool and holds out the ``"test"``
pool (the two halves of :func:`split_pools`, as for :class:`MNISTTask`); the pixels are floats
in [0, 1]. The digits are read once per data root and device (:func:`load_mnist`) and the pools
are cut once and shared by every task built on them.

    task = build({"type": "mnist-cnn", "channels": 8}, "task", data_root="data")
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import positive_int
from ..registry import register
from .mnist import make_activation
from .mnist_data import (
    CLASSES,
    INPUTS,
    SPLIT_SEED,
    MNISTDigits,
    locate_digits,
    split_pools,
)
from .module import ModuleTask

#: the digits of each pool, shared by the tasks built on the same digits.
_POOLS: dict[int, tuple[MNISTDigits, dict[str, tuple[Tensor, Tensor]]]] = {}


def mnist_pools(digits: MNISTDigits) -> dict[str, tuple[Tensor, Tensor]]:
    """The ``"train"`` and ``"test"`` pools of ``digits`` as ``(images (n, 784), labels)``."""
    found = _POOLS.get(id(digits))
    if found is None or found[0] is not digits:
        train, test = split_pools(len(digits))
        pools = {name: (digits.images[index.to(digits.images.device)],
                        digits.labels[index.to(digits.labels.device)])
                 for name, index in (("train", train), ("test", test))}
        found = _POOLS[id(digits)] = (digits, pools)
    return found[1]


class MNISTFamily(ModuleTask):
    """The MNIST data of a family: loads the digits and hands the pools to
    :class:`ModuleTask` (training data: the ``"train"`` pool; held out: the ``"test"`` pool).

    Args:
        model: builds one freshly initialized model.
        loss: ``loss(model(x), y)`` (default: cross-entropy on the labels).
        images: the shape of one input (default: flat, ``(784,)``).
        autoencode: the targets are the inputs, not the labels.
        batch_size: as for :class:`ModuleTask`.
        steps: as for :class:`ModuleTask`.
        name: as for :class:`ModuleTask`.
        data_root: the folder that holds ``MNIST/raw/`` (see :class:`MNISTTask`).
        download: download the training split when it is missing.
        device: where the digits are loaded.
    """

    def __init__(self, model, loss=F.cross_entropy, *, images: tuple[int, ...] = (INPUTS,),
                 autoencode: bool = False, batch_size: int, steps: int, name: str,
                 data_root: str | os.PathLike | None, download: bool,
                 device: torch.device | str) -> None:
        positive_int("batch_size", batch_size)
        positive_int("steps", steps)
        self.data_root, self.device, digits = locate_digits(data_root, download, device)
        self.data_split, self.data_note = digits.split, digits.note
        pools = mnist_pools(digits)
        (train_x, train_y), (test_x, test_y) = pools["train"], pools["test"]
        train_x, test_x = train_x.view(-1, *images), test_x.view(-1, *images)
        if autoencode:
            train_y, test_y = train_x, test_x
        super().__init__(model, train_x, train_y, loss, batch_size=batch_size, steps=steps,
                         name=name, heldout=(test_x, test_y))

    def describe(self) -> dict:
        """The task's settings and data provenance (for ``results.json``)."""
        return {**super().describe(), "data": "MNIST", "data_split": self.data_split,
                "train_pool": "train", "heldout_pool": "test", "split_seed": SPLIT_SEED,
                "data_note": self.data_note}


def _activation_name(activation: str) -> str:
    return type(make_activation(activation)).__name__.lower()


@register("task", "mnist-mlp", context=("data_root", "download", "device"))
class MNISTMLPTask(MNISTFamily):
    """MLPs ``784 -> hidden (x depth) -> 10`` on MNIST, cross-entropy.

    Args:
        hidden: units of every hidden layer.
        depth: hidden layers, each followed by the activation.
        activation: a ``torch.nn`` activation by name (see :func:`make_activation`).
        batch_size: digits per minibatch.
        steps: optimizer steps a problem supports.
        data_root: the folder that holds ``MNIST/raw/`` (see :class:`MNISTTask`).
        download: download the training split when it is missing.
        device: where the digits are loaded.
    """

    def __init__(self, hidden: int = 32, depth: int = 1, activation: str = "relu", *,
                 batch_size: int = 128, steps: int = 100,
                 data_root: str | os.PathLike | None = None, download: bool = True,
                 device: torch.device | str = "cpu") -> None:
        self.hidden = positive_int("hidden", hidden)
        self.depth = positive_int("depth", depth)
        self.activation = _activation_name(activation)
        super().__init__(self._model, batch_size=batch_size, steps=steps,
                         name=f"mnist-mlp-{self.activation}-{depth}x{hidden}",
                         data_root=data_root, download=download, device=device)

    def _model(self) -> nn.Module:
        layers: list[nn.Module] = []
        width = INPUTS
        for _ in range(self.depth):
            layers += [nn.Linear(width, self.hidden), make_activation(self.activation)]
            width = self.hidden
        return nn.Sequential(*layers, nn.Linear(width, CLASSES))

    def describe(self) -> dict:
        return {**super().describe(), "hidden": self.hidden, "depth": self.depth,
                "activation": self.activation}


@register("task", "mnist-cnn", context=("data_root", "download", "device"))
class MNISTCNNTask(MNISTFamily):
    """A small CNN on MNIST images ``(1, 28, 28)``, cross-entropy::

        Conv2d(1, c, 5, stride 2) -> act -> Conv2d(c, 2c, 3, stride 2) -> act -> Linear(50c, 10)

    (5,386 weights with ``channels = 8``).

    Args:
        channels: channels of the first convolution (the second has twice as many).
        activation: a ``torch.nn`` activation by name.
        batch_size: digits per minibatch.
        steps: optimizer steps a problem supports.
        data_root: the folder that holds ``MNIST/raw/`` (see :class:`MNISTTask`).
        download: download the training split when it is missing.
        device: where the digits are loaded.
    """

    def __init__(self, channels: int = 8, activation: str = "relu", *, batch_size: int = 128,
                 steps: int = 100, data_root: str | os.PathLike | None = None,
                 download: bool = True, device: torch.device | str = "cpu") -> None:
        self.channels = positive_int("channels", channels)
        self.activation = _activation_name(activation)
        super().__init__(self._model, images=(1, 28, 28), batch_size=batch_size, steps=steps,
                         name=f"mnist-cnn-{self.activation}-{channels}ch",
                         data_root=data_root, download=download, device=device)

    def _model(self) -> nn.Module:
        c = self.channels
        return nn.Sequential(nn.Conv2d(1, c, 5, stride=2), make_activation(self.activation),
                             nn.Conv2d(c, 2 * c, 3, stride=2), make_activation(self.activation),
                             nn.Flatten(), nn.Linear(2 * c * 5 * 5, CLASSES))

    def describe(self) -> dict:
        return {**super().describe(), "channels": self.channels, "activation": self.activation}


def sigmoid_mse(output: Tensor, target: Tensor) -> Tensor:
    """Mean squared error between ``sigmoid(output)`` and ``target`` (pixels in [0, 1])."""
    return F.mse_loss(torch.sigmoid(output), target)


@register("task", "mnist-autoencoder", context=("data_root", "download", "device"))
class MNISTAutoencoderTask(MNISTFamily):
    """Autoencoders ``784 -> hidden -> 784`` on MNIST: the loss is the mean squared error
    between ``sigmoid(output)`` and the input pixels.

    Args:
        hidden: units of the code layer.
        activation: a ``torch.nn`` activation by name, after the code layer.
        batch_size: digits per minibatch.
        steps: optimizer steps a problem supports.
        data_root: the folder that holds ``MNIST/raw/`` (see :class:`MNISTTask`).
        download: download the training split when it is missing.
        device: where the digits are loaded.
    """

    def __init__(self, hidden: int = 16, activation: str = "sigmoid", *, batch_size: int = 128,
                 steps: int = 100, data_root: str | os.PathLike | None = None,
                 download: bool = True, device: torch.device | str = "cpu") -> None:
        self.hidden = positive_int("hidden", hidden)
        self.activation = _activation_name(activation)
        super().__init__(self._model, sigmoid_mse, autoencode=True, batch_size=batch_size,
                         steps=steps, name=f"mnist-autoencoder-{self.activation}-{hidden}",
                         data_root=data_root, download=download, device=device)

    def _model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(INPUTS, self.hidden), make_activation(self.activation),
                             nn.Linear(self.hidden, INPUTS))

    def describe(self) -> dict:
        return {**super().describe(), "hidden": self.hidden, "activation": self.activation}
