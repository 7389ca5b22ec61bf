"""Pretrained learned optimizers shipped with the package, and the lookup of them by name.

``manifest.json`` records, for each, the command, the commit, the seed, the validation loss
and its rows of the test tables; ``phys-l2o pack`` makes the files from the output folders of
``phys-l2o reproduce`` and ``phys-l2o sweep``. ``phys_l2o.optim.from_pretrained`` wraps one as
a ``torch.optim`` optimizer.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ..optimizers.base import LearnedOptimizer

#: the folder of the package that holds the pretrained weights and their manifest.
PRETRAINED_PACKAGE = "phys_l2o.pretrained"


class PretrainedError(RuntimeError):
    """The shipped manifest or a weights file is broken: reinstall the package."""


@cache
def _manifest() -> dict[str, dict[str, Any]]:
    path = resources.files(PRETRAINED_PACKAGE).joinpath("manifest.json")
    if not path.is_file():
        return {}
    try:
        optimizers = json.loads(path.read_text())["optimizers"]
        if not isinstance(optimizers, dict) or not all(
                isinstance(e, dict) and isinstance(e.get("file"), str)
                for e in optimizers.values()):
            raise TypeError("each optimizer needs an entry with its `file`")
    except (ValueError, KeyError, TypeError) as error:
        raise PretrainedError(f"the pretrained optimizers' manifest.json is damaged ({error}); "
                              "reinstall phys-l2o (`pip install -e .` in a clone)") from error
    return optimizers


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pretrained_names() -> list[str]:
    """The names of the pretrained optimizers shipped with the package."""
    return sorted(_manifest())


def is_pretrained(name: object) -> bool:
    """Whether ``name`` names a shipped pretrained optimizer."""
    return isinstance(name, str) and name in _manifest()


def pretrained_info(name: str) -> dict[str, Any]:
    """The manifest entry of a pretrained optimizer: how it was made (command, commit, seed,
    budget, schedule), its ``horizon`` (the steps per trajectory it was meta-trained on, past
    which ``LearnedOptim`` warns), its validation loss, its rows of the test tables and its
    held-out scores (``generalization``).

    Raises:
        ValueError: an unknown name (the message lists the shipped ones).
    """
    manifest = _manifest()
    if name not in manifest:
        raise ValueError(f"no pretrained optimizer named {name!r}; choose from "
                         f"{pretrained_names()}")
    return dict(manifest[name])


def load_pretrained(name: str, device: torch.device | str = "cpu") -> LearnedOptimizer:
    """The pretrained learned optimizer ``name`` (see ``pretrained_names``), as a module."""
    from ..meta.checkpoint import load_checkpoint

    entry = pretrained_info(name)
    file = entry["file"]
    if Path(file).name != file or file in ("", ".", ".."):
        raise PretrainedError(f"the manifest names {file!r} for {name!r}: a pretrained file is "
                              "a plain file name inside the package; reinstall phys-l2o")
    with resources.as_file(resources.files(PRETRAINED_PACKAGE).joinpath(file)) as path:
        if not path.is_file():
            raise PretrainedError(f"the weights of {name!r} ({file}) are missing from the "
                                  "package; reinstall phys-l2o")
        if "sha256" in entry and sha256_of(path) != entry["sha256"]:
            raise PretrainedError(f"the weights of {name!r} ({file}) do not match the SHA-256 "
                                  "the manifest records: the file was changed or damaged; "
                                  "reinstall phys-l2o")
        optimizer, _ = load_checkpoint(path, device)
    return optimizer
