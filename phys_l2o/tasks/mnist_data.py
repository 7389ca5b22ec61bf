"""MNIST digits: reading them (torchvision's layout, the offline fallback), caching, and the pools.

The files live in ``<root>/MNIST/raw/`` (torchvision's layout; the root is
:func:`resolve_data_root`). :func:`load_mnist` reads them once per data root and copies them
once per device; it prefers the 60,000-digit training split, downloads it through torchvision
when it is missing (``download=True``), and otherwise falls back to the 10,000-digit test split,
with :attr:`MNISTDigits.note` saying so. Every official file is checked against torchvision's
md5; a damaged or foreign file raises ``ValueError`` naming it.

:func:`split_pools` shuffles the digits' indices with a fixed seed (``SPLIT_SEED``) and halves
them: the first half feeds meta-training (``pool="train"``), the second the test problems
(``pool="test"``). The task that draws minibatches from them is in ``phys_l2o.tasks.mnist``.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

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


def locate_digits(data_root: str | os.PathLike | None, download: bool,
                  device: torch.device | str) -> tuple[Path, torch.device, MNISTDigits]:
    """Where a task's digits are and the digits: the resolved data root, the device (a bare
    ``"cuda"`` made the current CUDA device) and the digits loaded there (``load_mnist``)."""
    root = resolve_data_root(data_root)
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return root, device, load_mnist(root, download=download, device=device)
