"""MNIST: a batch of small MLPs (784-hidden-10) trained on minibatches of digits.

Every problem is one net with its own initial weights (PyTorch's default ``nn.Linear`` init)
and its own batch order; the parameters of ``B`` nets are one tensor ``(batch, coords)``
packed as ``(W1, b1, W2, b2)`` and all nets run as one batched-matmul program::

    h      = act(x W1^T + b1)               # (batch, 128, hidden)
    logits = h W2^T + b2                    # (batch, 128, 10)
    F      = NLL(log_softmax(logits))       # mean over the 128 digits of the step

:meth:`MNISTTask.loss_and_grad` runs the forward pass and a hand-written backward pass (the
gradient autograd would give, without its tape); in meta-training the loss carries that
gradient as its derivative, so back-propagating the meta-loss costs nothing in the task.

The digits come from ``phys_l2o.tasks.mnist_data`` (reading, the offline fallback, caching and
the two pools; its public names are importable from here too): :func:`load_mnist` reads them
once per data root and device, each step gathers its minibatch by index, and the pools are the
two halves of a fixed-seed shuffle (:func:`split_pools`). Offline, with only the test split at
hand, :attr:`MNISTTask.data_note` says so.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from ..checks import positive_int
from ..registry import copy_with, register
from .base import Problems, Task, minibatch_indices, minibatch_order
from .mnist_data import (
    CLASSES,
    INPUTS,
    SPLIT_SEED,
    MNISTDigits,
    locate_digits,
    split_pools,
)

# the loading's other public names, importable from here too (``X as X``: a re-export)
from .mnist_data import OFFICIAL_MD5 as OFFICIAL_MD5
from .mnist_data import OFFICIAL_SIZE as OFFICIAL_SIZE
from .mnist_data import SPLIT_PREFIX as SPLIT_PREFIX
from .mnist_data import expected_files as expected_files
from .mnist_data import load_mnist as load_mnist
from .mnist_data import raw_folder as raw_folder
from .mnist_data import read_idx as read_idx
from .mnist_data import resolve_data_root as resolve_data_root

# ----------------------------------------------------------------------------- activations


def _activation_classes() -> dict[str, type[nn.Module]]:
    from torch.nn.modules import activation

    # only elementwise maps with default arguments
    skip = {"MultiheadAttention", "Softmax", "Softmax2d", "Softmin", "LogSoftmax", "GLU",
            "Threshold"}
    return {name.lower(): cls for name, cls in vars(activation).items()
            if isinstance(cls, type) and issubclass(cls, nn.Module) and cls is not nn.Module
            and cls.__module__ == activation.__name__ and name not in skip}


def make_activation(name: str) -> nn.Module:
    """An elementwise ``torch.nn`` activation by case-insensitive name (``"sigmoid"``,
    ``"relu"``, ``"tanh"``, ``"leaky_relu"``, ...), built with its default arguments."""
    classes = _activation_classes()
    cls = classes.get(str(name).lower().replace("_", "").replace("-", ""))
    if cls is None:
        raise ValueError(f"unknown activation {name!r}; choose a torch.nn activation such as "
                         "'sigmoid', 'relu', 'tanh', 'gelu', 'elu', 'leaky_relu', 'softplus' "
                         f"(all: {', '.join(sorted(classes))})")
    # eval mode: RReLU uses its mean slope (deterministic)
    return cls().requires_grad_(False).eval()


# ----------------------------------------------------------------------------- the task


class _KnownGradient(torch.autograd.Function):
    """``loss`` as a function of ``params`` whose gradient is the already computed ``grad``.

    Meta-training needs ``d loss / d params`` (first order; the gradient fed to the optimizer
    is detached), which the forward/backward pass of the task has already computed exactly.
    """

    @staticmethod
    def forward(ctx, params: Tensor, loss: Tensor, grad: Tensor) -> Tensor:
        ctx.save_for_backward(grad)
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_loss: Tensor) -> tuple[Tensor, None, None]:
        (grad,) = ctx.saved_tensors
        return grad_loss.unsqueeze(-1) * grad, None, None


@register("task", "mnist", context=("data_root", "download", "device"))
class MNISTTask(Task):
    """A batch of MLPs ``784 -> hidden -> 10`` on MNIST minibatches (the paper's MNIST task).

    Args:
        activation: a ``torch.nn`` activation by name (``"sigmoid"`` for meta-training,
            ``"relu"`` for the transfer test).
        hidden: hidden units.
        pool: ``"train"`` (meta-training and validation problems) or ``"test"``.
        steps: optimizer steps a problem supports (it holds ``steps + 1`` minibatches).
        batch_size: digits per minibatch.
        data_root: the folder that holds ``MNIST/raw/`` (see :func:`resolve_data_root`).
        download: download the training split through torchvision when it is missing.
        device: where the digits are loaded (other devices get a copy on first use).

    Attributes:
        data_split: ``"train"`` or ``"test"``: the MNIST split the pools were cut from.
        data_note: ``None``, or a sentence saying that only the test split was available.
    """

    name = "mnist"

    def __init__(self, activation: str = "sigmoid", hidden: int = 20, *, pool: str = "train",
                 steps: int = 100, batch_size: int = 128,
                 data_root: str | os.PathLike | None = None, download: bool = True,
                 device: torch.device | str = "cpu") -> None:
        for label, value in (("hidden", hidden), ("steps", steps), ("batch_size", batch_size)):
            positive_int(label, value)
        if pool not in ("train", "test"):
            raise ValueError(f"pool must be 'train' or 'test', got {pool!r}")
        self.act = make_activation(activation)
        self.activation = type(self.act).__name__.lower()
        self.hidden, self.pool, self.steps, self.batch_size = hidden, pool, steps, batch_size
        self.segments = (hidden * INPUTS, hidden, CLASSES * hidden, CLASSES)
        self._bounds = (INPUTS ** -0.5, INPUTS ** -0.5, hidden ** -0.5, hidden ** -0.5)

        self.data_root, self.device, digits = locate_digits(data_root, download, device)
        self.data_split, self.data_note = digits.split, digits.note
        self._digits = {self.device: digits}
        train_pool, test_pool = split_pools(len(digits))
        self.pool_indices = train_pool if pool == "train" else test_pool
        if len(self.pool_indices) < batch_size:
            raise ValueError(f"the {pool} pool holds {len(self.pool_indices)} digits, fewer than "
                             f"a minibatch of {batch_size}")

    @property
    def pool_size(self) -> int:
        return len(self.pool_indices)

    def with_pool(self, pool: str) -> MNISTTask:
        """The same task drawing its problems from the other pool (the digits are shared)."""
        if pool not in ("train", "test"):
            raise ValueError(f"pool must be 'train' or 'test', got {pool!r}")
        other = copy_with(self, pool=pool)
        train_pool, test_pool = split_pools(len(next(iter(self._digits.values()))))
        other.pool_indices = train_pool if pool == "train" else test_pool
        return other

    def __repr__(self) -> str:
        return (f"MNISTTask(activation={self.activation!r}, hidden={self.hidden}, "
                f"pool={self.pool!r}, steps={self.steps}, batch_size={self.batch_size}, "
                f"split={self.data_split!r}, pool_size={self.pool_size})")

    def describe(self) -> dict:
        """The task's settings and data provenance (for ``results.json``)."""
        return {"name": self.name, "activation": self.activation, "hidden": self.hidden,
                "pool": self.pool, "pool_size": self.pool_size, "steps": self.steps,
                "batch_size": self.batch_size, "data_split": self.data_split,
                "split_seed": SPLIT_SEED, "data_note": self.data_note}

    # -- problems

    def sample(self, num_problems: int, generator: torch.Generator,
               device: torch.device | str = "cpu") -> Problems:
        """Initial weights ``params (batch, coords)`` and minibatch indices ``batches (batch,
        steps + 1, batch_size)``; problem ``i`` depends only on the draws before it, so the
        first ``k`` of ``n`` problems are the ``k`` problems of the same seed.

        Each problem walks through its own random permutations of the pool (a fresh one per
        pass); step ``t`` uses minibatch ``t``. Drawn on the CPU, then moved to ``device``.
        """
        if num_problems < 1:
            raise ValueError(f"num_problems must be >= 1, got {num_problems}")
        params = torch.empty(num_problems, self.num_coords)
        batches = torch.empty(num_problems, self.steps + 1, self.batch_size, dtype=torch.long)
        for i in range(num_problems):
            for chunk, bound in zip(params[i].split(self.segments), self._bounds):
                chunk.uniform_(-bound, bound, generator=generator)
            order = minibatch_order(self.pool_size, self.steps, self.batch_size, generator)
            batches[i] = self.pool_indices[order]
        return {"params": params.to(device), "batches": batches.to(device)}

    def init_params(self, problems: Problems) -> Tensor:
        return problems["params"].clone()

    # -- the nets

    def _data(self, device: torch.device) -> MNISTDigits:
        digits = self._digits.get(device)
        if digits is None:
            digits = self._digits[self.device].to(device)
            self._digits[device] = digits
        return digits

    def minibatch(self, problems: Problems, step: int) -> tuple[Tensor, Tensor]:
        """Digits ``(batch, batch_size, 784)`` and labels ``(batch, batch_size)`` of ``step``."""
        indices = minibatch_indices(problems, step, "MNISTTask")
        digits = self._data(indices.device)
        index = indices.reshape(-1)
        shape = indices.shape
        # gather bytes, then convert: the same floats as ``images[index]``, 4x less traffic
        x = digits.pixels.index_select(0, index).to(torch.float32).div_(255.0)
        return x.view(*shape, INPUTS), digits.labels.index_select(0, index).view(shape)

    def unpack(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Views ``W1 (batch, hidden, 784)``, ``b1 (batch, hidden)``, ``W2 (batch, 10, hidden)``,
        ``b2 (batch, 10)`` of the flat parameters (``nn.Linear``'s ``(out, in)`` layout)."""
        w1, b1, w2, b2 = params.split(self.segments, dim=-1)
        batch = params.shape[0]
        return (w1.view(batch, self.hidden, INPUTS), b1, w2.view(batch, CLASSES, self.hidden), b2)

    def _forward(self, params: Tensor, x: Tensor, labels: Tensor):
        # hidden units and classes on axis 1, digits last: the fast layout for the softmax
        w1, b1, w2, b2 = self.unpack(params)
        z1 = torch.baddbmm(b1.unsqueeze(-1), w1, x.transpose(1, 2))     # (batch, hidden, n)
        h = self.act(z1)
        logits = torch.baddbmm(b2.unsqueeze(-1), w2, h)                 # (batch, 10, n)
        log_p = torch.log_softmax(logits, dim=1)
        loss = -log_p.gather(1, labels.unsqueeze(1)).squeeze(1).mean(-1)
        return loss, (w2, z1, h, log_p)

    def loss(self, params: Tensor, problems: Problems, step: int) -> Tensor:
        x, labels = self.minibatch(problems, step)
        return self._forward(params, x, labels)[0]

    def _activation_backward(self, grad_h: Tensor, z1: Tensor, h: Tensor) -> Tensor:
        act = type(self.act)
        if act is nn.Sigmoid:
            return torch.ops.aten.sigmoid_backward(grad_h, h)
        if act is nn.Tanh:
            return torch.ops.aten.tanh_backward(grad_h, h)
        if act is nn.ReLU:
            return torch.ops.aten.threshold_backward(grad_h, h, 0)
        with torch.enable_grad():
            z = z1.detach().requires_grad_(True)
            (grad_z,) = torch.autograd.grad(self.act(z), z, grad_h)
        return grad_z

    def loss_and_grad(self, params: Tensor, problems: Problems, step: int) -> tuple[Tensor, Tensor]:
        """One forward and one hand-written backward pass for all nets (no autograd tape).

        The gradient equals autograd's (same kernels, up to float rounding); the loss carries
        it as its derivative when ``params`` has a graph (what meta-training needs).
        """
        x, labels = self.minibatch(problems, step)
        with torch.no_grad():
            theta = params.detach()
            loss, (w2, z1, h, log_p) = self._forward(theta, x, labels)
            # d loss / d logits = (softmax - onehot) / n
            grad_logits = log_p.exp_()                                   # (batch, 10, n)
            target = labels.unsqueeze(1)
            grad_logits.scatter_add_(1, target, grad_logits.new_full(target.shape, -1.0))
            grad_logits.div_(labels.shape[1])
            grad_w2 = torch.bmm(grad_logits, h.transpose(1, 2))
            grad_h = torch.bmm(w2.transpose(1, 2), grad_logits)         # (batch, hidden, n)
            grad_z1 = self._activation_backward(grad_h, z1, h)
            grad_w1 = torch.bmm(grad_z1, x)
            grad = torch.cat([grad_w1.flatten(1), grad_z1.sum(-1), grad_w2.flatten(1),
                              grad_logits.sum(-1)], dim=1)
        if params.requires_grad and torch.is_grad_enabled():
            loss = _KnownGradient.apply(params, loss, grad)
        return loss, grad
