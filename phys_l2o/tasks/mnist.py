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

The digits are read once per data root and device (:func:`load_mnist`) and each step gathers
its minibatch by index. The training split's 60,000 indices are shuffled with a fixed seed
and halved: the first half feeds meta-training (``pool="train"``), the second the test
problems (``pool="test"``). Offline, with only the 10,000-digit test split at hand, that split
is halved the same way and :attr:`MNISTTask.data_note` says so.
"""

from __future__ import annotations

import copy
import gzip
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..checks import positive_int
from ..registry import register
from .base import Problems, Task, minibatch_indices, minibatch_order

#: pixels per digit and classes.
INPUTS, CLASSES = 28 * 28, 10
#: the seed of the shuffle that halves the digits into the two pools.
SPLIT_SEED = 0
#: file name prefix of each split in torchvision's layout ``<root>/MNIST/raw/``.
SPLIT_PREFIX = {"train": "train", "test": "t10k"}
#: the official files (torchvision's resource list) and their number of digits.
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
OFFICIAL_SIZE = {"train": 60_000, "test": 10_000}


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class MNISTDigits:
    """Digits of one split.

    ``images (N, 784)`` float in [0, 1] (``pixels / 255``), ``pixels (N, 784)`` the raw
    uint8 values (a quarter of the memory traffic when minibatches are gathered) and
    ``labels (N,)`` int64.
    """

    images: Tensor
    pixels: Tensor
    labels: Tensor
    split: str          # "train" or "test": the split the digits come from
    note: str | None    # set when the training split was not available (offline)

    @classmethod
    def from_pixels(cls, pixels: Tensor, labels: Tensor, split: str,
                    note: str | None = None) -> MNISTDigits:
        return cls(pixels.float().div_(255.0), pixels, labels, split, note)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def to(self, device: torch.device | str) -> MNISTDigits:
        return MNISTDigits(self.images.to(device), self.pixels.to(device),
                           self.labels.to(device), self.split, self.note)


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root``, else ``$PHYS_L2O_DATA``, else ``$XDG_CACHE_HOME/phys-l2o``
    (``~/.cache/phys-l2o``). MNIST lives in ``<root>/MNIST/raw/`` (torchvision's layout)."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("PHYS_L2O_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "phys-l2o"


def raw_folder(root: Path) -> Path:
    return root / "MNIST" / "raw"


def expected_files(split: str) -> list[str]:
    prefix = SPLIT_PREFIX[split]
    return [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]


def _find_split(raw: Path, split: str) -> list[Path] | None:
    """The (images, labels) files of ``split``, or ``None``.

    The official ``.gz`` file is preferred: its md5 is checked. An uncompressed file (as a
    user may have extracted it) is read only where no ``.gz`` file is beside it.
    """
    found = []
    for name in expected_files(split):
        for candidate in (raw / f"{name}.gz", raw / name):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            return None
    return found


def _corrupt(path: Path, why: str) -> ValueError:
    return ValueError(f"MNIST file {path} is corrupt or not an MNIST idx file ({why}); delete "
                      "it to download it again, or replace it with the official file")


def read_idx(path: str | os.PathLike, ndim: int) -> Tensor:
    """Read an idx file of unsigned bytes (``.gz`` or uncompressed) with ``ndim`` axes.

    Raises:
        ValueError: the file is damaged, not an idx file, or an official ``.gz`` file whose
            md5 does not match torchvision's.
    """
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise _corrupt(path, f"gzip: {err}") from err
    else:
        data = raw
    header = 4 + 4 * ndim
    if len(data) < header or data[:3] != b"\x00\x00\x08" or data[3] != ndim:
        raise _corrupt(path, f"expected the header of a {ndim}-d unsigned-byte idx file")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    if len(data) - header != math.prod(dims):
        raise _corrupt(path, f"{len(data) - header} data bytes for shape {dims}")
    official_md5 = OFFICIAL_MD5.get(path.name)
    official_size = OFFICIAL_SIZE["train" if path.name.startswith("train") else "test"]
    if official_md5 is not None and dims[0] == official_size:
        # a file with the official name and size must be the official file
        from torchvision.datasets.utils import check_integrity

        if not check_integrity(str(path), official_md5):
            raise _corrupt(path, "md5 differs from the official file's")
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    return torch.from_numpy(array.copy())


def _read_split(files: list[Path], split: str, note: str | None) -> MNISTDigits:
    images, labels = read_idx(files[0], 3), read_idx(files[1], 1)
    if images.shape[1:] != (28, 28):
        raise _corrupt(files[0], f"digits of shape {tuple(images.shape[1:])}, not 28x28")
    if images.shape[0] != labels.shape[0]:
        raise _corrupt(files[1], f"{labels.shape[0]} labels for {images.shape[0]} images")
    if labels.numel() and int(labels.max()) >= CLASSES:
        raise _corrupt(files[1], f"label {int(labels.max())} is not a digit")
    return MNISTDigits.from_pixels(images.reshape(-1, INPUTS), labels.long(), split, note)


def _writable(folder: Path) -> bool:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK)


def _download(root: Path) -> None:
    """Download (both splits) through torchvision into ``<root>/MNIST/raw``.

    A failed download removes the folders it made, so the data folder is left as it was.
    """
    from torchvision.datasets import MNIST

    made = [folder for folder in (raw_folder(root), raw_folder(root).parent, root)
            if not folder.exists()]
    try:
        MNIST(str(root), train=True, download=True)
    except BaseException:
        for folder in made:  # deepest first; only the empty ones
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


_CPU_CACHE: dict[str, MNISTDigits] = {}
_DEVICE_CACHE: dict[tuple[str, str], MNISTDigits] = {}


def load_mnist(root: str | os.PathLike | None = None, *, download: bool = True,
               device: torch.device | str = "cpu") -> MNISTDigits:
    """The digits the MNIST task draws from, read once per ``(root, device)``.

    The training split when it is there (or can be downloaded through torchvision, with
    ``download``); else the test split, with ``note`` saying so. Files are read once per
    root (later calls reuse that result, whatever their ``download``) and copied once per
    device.

    Raises:
        FileNotFoundError: neither split is in ``<root>/MNIST/raw`` and none could be
            downloaded; the message names the folder, the files and the fixes.
        ValueError: a file is corrupt.
    """
    root = resolve_data_root(root)
    device = torch.device(device)
    key = str(root.resolve())
    if (key, str(device)) in _DEVICE_CACHE:
        return _DEVICE_CACHE[key, str(device)]
    if key not in _CPU_CACHE:
        _CPU_CACHE[key] = _read(root, download)
    digits = _CPU_CACHE[key] if device.type == "cpu" else _CPU_CACHE[key].to(device)
    _DEVICE_CACHE[key, str(device)] = digits
    return digits


def _read(root: Path, download: bool) -> MNISTDigits:
    raw = raw_folder(root)
    train = _find_split(raw, "train")
    why = "download=False"
    if train is None and download:
        if not _writable(raw):
            why = "no download: the data folder is read-only"
        else:
            try:
                _download(root)
            except Exception as err:  # offline, blocked, ...: fall back below
                lines = [line for line in str(err).splitlines() if line.strip()] or [""]
                why = f"download failed: {type(err).__name__} {lines[-1].strip()[:120]}"
            train = _find_split(raw, "train")
    if train is not None:
        return _read_split(train, "train", None)
    test = _find_split(raw, "test")
    if test is None:
        names = ", ".join(f"{n}[.gz]" for s in ("train", "test") for n in expected_files(s))
        raise FileNotFoundError(
            f"no MNIST data in {raw} (looked for {names}; the training split is preferred, "
            f"the test split alone also works; {why}). Point the project at a folder that "
            "holds MNIST/raw/ (--data-root or the PHYS_L2O_DATA environment variable), or "
            "connect to the internet so that torchvision can download it.")
    digits = _read_split(test, "test", None)
    note = (f"offline: only the MNIST test split ({len(digits):,} digits) was found ({why}); "
            "split 50/50 with a fixed seed into the meta-training and meta-test pools, in "
            "place of the 60,000-digit training split the paper halves")
    return MNISTDigits(digits.images, digits.pixels, digits.labels, "test", note)


def split_pools(num_digits: int, seed: int = SPLIT_SEED) -> tuple[Tensor, Tensor]:
    """Shuffle ``range(num_digits)`` with ``seed`` and halve it: (meta-training, test) indices."""
    order = torch.randperm(num_digits, generator=torch.Generator().manual_seed(seed))
    return order[: num_digits // 2], order[num_digits // 2:]


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

        self.data_root = resolve_data_root(data_root)
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        digits = load_mnist(self.data_root, download=download, device=self.device)
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
        other = copy.copy(self)
        train_pool, test_pool = split_pools(len(next(iter(self._digits.values()))))
        other.pool, other.pool_indices = pool, (train_pool if pool == "train" else test_pool)
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
