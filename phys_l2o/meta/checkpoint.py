"""Checkpoints of learned optimizers: weights, the config that rebuilds them, and the run record.

Files are written atomically (to a temporary file, then renamed), so an interrupted save
never destroys an earlier checkpoint.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..optimizers import build_optimizer
from ..optimizers.base import LearnedOptimizer

FORMAT = "phys-l2o-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or not a phys-l2o checkpoint."""


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it normal rights
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(path: str | os.PathLike, optimizer: LearnedOptimizer,
                    **metadata: Any) -> None:
    """Save ``optimizer`` (its registered name, config and weights) with JSON-like ``metadata``."""
    payload = {"format": FORMAT, "name": optimizer.name, "config": optimizer.config(),
               "state_dict": {k: v.detach().cpu() for k, v in optimizer.state_dict().items()},
               "metadata": metadata}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | os.PathLike,
                    device: torch.device | str = "cpu") -> tuple[LearnedOptimizer, dict]:
    """Rebuild the optimizer saved at ``path``; returns ``(optimizer, metadata)``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train one with "
                              f"`phys-l2o train --optimizer hnn --out {path}`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        raise CheckpointError(f"{path} is not a readable checkpoint ({error}); it may be "
                              "truncated or corrupt: train it again") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a phys-l2o checkpoint (expected format {FORMAT})")
    try:
        optimizer = build_optimizer(payload["name"], **payload["config"])
        optimizer.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{path} does not match this version of phys-l2o: {error}") from error
    return optimizer.to(device), payload.get("metadata", {})
