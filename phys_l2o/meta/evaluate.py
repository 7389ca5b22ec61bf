"""Evaluation: every method runs, frozen, on the same batch of test problems."""

from __future__ import annotations

import time
from collections.abc import Mapping

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..optimizers.base import Optimizer
from ..tasks.base import Problems, Task
from .rollout import rollout


def evaluate(optimizer: Optimizer, task: Task, problems: Problems, steps: int) -> Tensor:
    """Losses ``(batch, steps)`` of ``optimizer`` on ``problems`` (no meta-gradients)."""
    was_training = getattr(optimizer, "training", None)
    if was_training:
        optimizer.eval()
    try:
        with torch.no_grad():
            return rollout(optimizer, task, problems, steps)
    finally:
        if was_training:
            optimizer.train()


def compare(optimizers: Mapping[str, Optimizer], task: Task, problems: Problems, steps: int, *,
            progress: bool = True) -> dict[str, dict]:
    """Evaluate each named optimizer on the same problems.

    Returns:
        ``{name: {"curves": Tensor (batch, steps), "seconds": float}}``.
    """
    out = {}
    for name, optimizer in tqdm(optimizers.items(), desc="evaluate", disable=not progress):
        start = time.perf_counter()
        curves = evaluate(optimizer, task, problems, steps)
        out[name] = {"curves": curves.cpu(), "seconds": time.perf_counter() - start}
    return out
