"""Pretrained learned optimizers shipped with the package, and the lookup of them by name.

``manifest.json`` records, for each, the command, the commit, the seed, the validation loss
and its rows of the test tables; ``phys-l2o pack`` makes the files from the output folders of
``phys-l2o reproduce`` and ``phys-l2o sweep``. ``phys_l2o.optim.from_pretrained`` wraps one as
a ``torch.optim`` optimizer.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ..optimizers.base import LearnedOptimizer

#: the folder of the package that holds the pretrained weights and their manifest.
PRETRAINED_PACKAGE = "phys_l2o.pretrained"


@cache
def _manifest() -> dict[str, dict[str, Any]]:
    path = resources.files(PRETRAINED_PACKAGE).joinpath("manifest.json")
    return json.loads(path.read_text())["optimizers"] if path.is_file() else {}


def pretrained_names() -> list[str]:
    """The names of the pretrained optimizers shipped with the package."""
    return sorted(_manifest())


def is_pretrained(name: object) -> bool:
    """Whether ``name`` names a shipped pretrained optimizer."""
    return isinstance(name, str) and name in _manifest()


def pretrained_info(name: str) -> dict[str, Any]:
    """The manifest entry of a pretrained optimizer: how it was made (command, commit, seed,
    budget), its validation loss and its row of the test table.

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
    with resources.as_file(resources.files(PRETRAINED_PACKAGE).joinpath(entry["file"])) as path:
        optimizer, _ = load_checkpoint(path, device)
    return optimizer
