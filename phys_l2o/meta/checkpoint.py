"""Checkpoints of learned optimizers: the spec that rebuilds them, their weights and the run record.

A checkpoint holds ``spec_of(optimizer)`` (``phys_l2o.registry``), so any composition comes
back from it, including pieces of the user's own that are registered. Files are written
atomically (to a temporary file, then renamed), so an interrupted save never destroys an
earlier checkpoint, and a file is written only once its spec has been checked to rebuild the
optimizer with the saved weights.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..optimizers.base import LearnedOptimizer
from ..registry import SpecError, build, plain_data, spec_of

FORMAT = "phys-l2o-checkpoint/2"
#: the earlier format: a registered name and the optimizer's constructor config.
FORMAT_1 = "phys-l2o-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or not a phys-l2o checkpoint."""


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        try:
            write(tmp)
        except RuntimeError as error:  # torch's file writer reports a full disk this way
            free = shutil.disk_usage(path.parent).free
            raise OSError(errno.ENOSPC if free < (1 << 26) else errno.EIO,
                          f"could not write the file ({str(error).splitlines()[0]}; "
                          f"{free / 1e6:.0f} MB free on its disk)", str(path)) from error
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it normal rights
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(path: str | os.PathLike, optimizer: LearnedOptimizer,
                    **metadata: Any) -> None:
    """Save ``optimizer`` (its spec and weights) with JSON-like ``metadata``.

    Raises:
        SpecError: the optimizer (or one of its pieces) has no spec, or a metadata value is
            not plain data (numbers, strings, booleans, None, lists, dicts; paths and numpy
            numbers are converted); nothing is written.
    """
    spec = spec_of(optimizer)
    state_dict = {k: v.detach().cpu().clone() for k, v in optimizer.state_dict().items()}
    payload = {"format": FORMAT, "spec": spec, "state_dict": state_dict,
               "metadata": plain_data(metadata, "metadata", keep_none=True)}
    try:  # the guarantee: what is written, load_checkpoint rebuilds
        with torch.random.fork_rng(devices=[]):
            build(spec, "optimizer").load_state_dict(state_dict)
    except (SpecError, TypeError, RuntimeError, ValueError) as error:
        raise SpecError(f"{type(optimizer).__name__} cannot be saved: its spec does not "
                        f"rebuild it ({error}); nothing was written to {path}") from error
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _legacy_spec(payload: dict) -> dict:
    """The spec of a format-1 checkpoint (a name and the optimizer's constructor config)."""
    config = dict(payload["config"])
    name = payload["name"]
    if name == "hnn":
        integrator = config.pop("integrator", "euler-readout")
        options = config.pop("integrator_options", {}) or {}
        if integrator != "euler-readout":
            config["readout"] = {"type": "flow-readout", "flow": {"type": integrator, **options}}
    if name == "hnn-param":
        config["flow"] = {"type": config.pop("step", "symplectic-euler"),
                          **(config.pop("step_options", {}) or {})}
    return {"type": name, **config}


def _legacy_state_dict(state_dict: dict) -> dict:
    """Format 1 named the HNN's read-out ``integrator``."""
    return {(("readout." + k[len("integrator."):]) if k.startswith("integrator.") else k): v
            for k, v in state_dict.items()}


def load_checkpoint(path: str | os.PathLike,
                    device: torch.device | str = "cpu") -> tuple[LearnedOptimizer, dict]:
    """Rebuild the optimizer saved at ``path``; returns ``(optimizer, metadata)``.

    Raises:
        CheckpointError: no file, an unreadable or damaged file, not a phys-l2o checkpoint,
            a type that is not registered here (the message names it and says how to register
            it), or weights that do not fit the spec.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train one with "
                              f"`phys-l2o train --optimizer hnn --out {path}`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        raise CheckpointError(f"{path} is not a readable checkpoint ({error}); it may be "
                              "truncated or corrupt: train it again") from error
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if fmt not in (FORMAT, FORMAT_1):
        raise CheckpointError(f"{path} is not a phys-l2o checkpoint (expected format {FORMAT})")
    try:
        state_dict = payload["state_dict"]
        if fmt == FORMAT_1:
            spec, state_dict = _legacy_spec(payload), _legacy_state_dict(state_dict)
        else:
            spec = payload["spec"]
        with torch.random.fork_rng(devices=[]):  # the weights come from the file: leave the
            optimizer = build(spec, "optimizer")  # caller's random state as it was
    except SpecError as error:
        raise CheckpointError(f"{path} cannot be rebuilt: {error}") from error
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(f"{path} is damaged or does not match this version of phys-l2o: "
                              f"{error}") from error
    try:
        optimizer.load_state_dict(state_dict)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{path}: the saved weights do not fit the optimizer its spec "
                              f"builds ({error})") from error
    return optimizer.to(device), payload.get("metadata", {})
