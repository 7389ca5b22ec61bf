"""Meta-training by truncated backpropagation through the optimization trajectory.

One *trajectory* optimizes a meta-batch of fresh problems for ``steps`` steps; every
``unroll`` steps the mean over problems of the summed losses (eq. 3) is back-propagated into
the optimizer's weights (Adam), then the trajectory is detached. The last, partial truncation
gets its update too. After every epoch of ``trajectories`` trajectories, the mean final-step
loss on a fixed batch of validation problems decides which weights are kept (the untrained
weights are the first candidate); ``meta_train`` hands the optimizer back with those loaded.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..checks import positive_int, positive_number
from ..optimizers.base import LearnedOptimizer, Optimizer
from ..seeding import make_generator
from ..tasks.base import Problems, Task
from .evaluate import evaluate
from .rollout import rollout


@dataclass
class Schedule:
    """How long and how a learned optimizer is meta-trained.

    The defaults are the paper's quadratic schedule for the HNN (REFERENCE.md).
    """

    epochs: int = 100
    trajectories: int = 20
    meta_batch: int = 1
    steps: int = 100
    unroll: int = 15
    meta_lr: float = 0.01
    validation_problems: int = 50

    def __post_init__(self) -> None:
        for name in ("epochs", "trajectories", "meta_batch", "steps", "unroll",
                     "validation_problems"):
            positive_int(name, getattr(self, name))
        positive_number("meta_lr", self.meta_lr)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """The best weights found and the record of the run.

    Attributes:
        best_state: the weights with the lowest validation loss (loaded into the optimizer
            when ``meta_train`` returns).
        best_epoch: the epoch they are from (0: the untrained weights).
        best_validation: their validation loss.
        history: ``{"epoch", "validation", "seconds"}`` per epoch.
        seconds: wall time of the run.
        skipped_updates: meta-updates skipped for a non-finite meta-loss or meta-gradient.
        last_state: the weights after the last epoch (kept with ``keep_last=True``).
    """

    best_state: dict[str, Tensor]
    best_epoch: int
    best_validation: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    skipped_updates: int = 0
    last_state: dict[str, Tensor] | None = None


class MetaTrainingDiverged(RuntimeError):
    """Every trajectory of an epoch diverged. ``result`` holds the best weights found before."""

    def __init__(self, message: str, result: TrainResult) -> None:
        super().__init__(message)
        self.result = result


def validation_loss(optimizer: Optimizer, task: Task, problems: Problems, steps: int) -> float:
    """Mean final-step loss on the validation problems (``inf`` if any diverged)."""
    final = evaluate(optimizer, task, problems, steps)[:, -1]
    value = float(final.mean())
    return value if math.isfinite(value) else math.inf


def meta_train(optimizer: LearnedOptimizer, task: Task, schedule: Schedule | None = None, *,
               seed: int = 0, device: torch.device | str = "cpu", progress: bool = True,
               keep_last: bool = False) -> TrainResult:
    """Meta-train ``optimizer`` in place on ``task``; it ends with its best weights loaded.

    The best weights are those with the lowest validation loss after an epoch (the untrained
    ones count as epoch 0).

    Args:
        optimizer: the learned optimizer (its weights are trained in place).
        task: the problem family to meta-train on.
        schedule: epochs, trajectories, truncation and meta learning rate; ``None`` is
            ``Schedule()``, the paper's HNN schedule on the quadratic.
        seed: the master seed of the training and validation problems.
        device: where the problems and the optimizer live.
        progress: show a progress bar.
        keep_last: also keep the weights of the last epoch in ``result.last_state``.

    Raises:
        MetaTrainingDiverged: if every trajectory of an epoch produced a non-finite
            meta-loss (lower the meta learning rate or ``out_mul``); the optimizer holds
            the best weights found before.
    """
    schedule = Schedule() if schedule is None else schedule
    optimizer.to(device)
    train_gen = make_generator(seed, "meta-train")
    validation = task.sample(schedule.validation_problems, make_generator(seed, "validation"),
                             device)
    meta_opt = torch.optim.Adam(optimizer.parameters(), lr=schedule.meta_lr)
    start = time.perf_counter()

    best = validation_loss(optimizer, task, validation, schedule.steps)
    result = TrainResult(copy.deepcopy(optimizer.state_dict()), 0, best,
                         [{"epoch": 0, "validation": best}])
    skipped = 0

    def meta_step(meta_loss: Tensor) -> bool:
        nonlocal skipped
        if not torch.isfinite(meta_loss):
            skipped += 1
            return False
        meta_opt.zero_grad(set_to_none=True)
        meta_loss.backward()
        grads = [p.grad for p in optimizer.parameters() if p.grad is not None]
        if not all(torch.isfinite(g).all() for g in grads):
            skipped += 1
            return False
        meta_opt.step()
        return True

    bar = tqdm(total=schedule.epochs * schedule.trajectories, disable=not progress,
               desc=f"meta-train {getattr(optimizer, 'name', 'optimizer')}", unit="traj")
    try:
        for epoch in range(1, schedule.epochs + 1):
            diverged_before = skipped
            for _ in range(schedule.trajectories):
                problems = task.sample(schedule.meta_batch, train_gen, device)
                rollout(optimizer, task, problems, schedule.steps,
                        truncation=schedule.unroll, meta_step=meta_step)
                bar.update(1)
            value = validation_loss(optimizer, task, validation, schedule.steps)
            result.history.append({"epoch": epoch, "validation": value,
                                   "seconds": time.perf_counter() - start})
            if value < result.best_validation:
                result.best_state = copy.deepcopy(optimizer.state_dict())
                result.best_epoch, result.best_validation = epoch, value
            bar.set_postfix(val=f"{value:.4g}", best=f"{result.best_validation:.4g}")
            if skipped - diverged_before >= schedule.trajectories:
                result.seconds, result.skipped_updates = time.perf_counter() - start, skipped
                optimizer.load_state_dict(result.best_state)
                raise MetaTrainingDiverged(
                    f"meta-training diverged: every trajectory of epoch {epoch} produced a "
                    f"non-finite meta-loss (meta_lr={schedule.meta_lr}, "
                    f"out_mul={getattr(optimizer, 'out_mul', '?')}). Lower the meta learning rate "
                    f"or out_mul. The best weights so far (epoch {result.best_epoch}) are in "
                    "this error's `result`.", result)
    finally:
        bar.close()
    result.seconds, result.skipped_updates = time.perf_counter() - start, skipped
    if keep_last:
        result.last_state = copy.deepcopy(optimizer.state_dict())
    optimizer.load_state_dict(result.best_state)
    return result
