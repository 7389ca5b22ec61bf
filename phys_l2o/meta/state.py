"""What a meta-training run is and carries: its schedule, its state between epochs, its result.

A ``TrainState`` is everything one epoch hands the next: the learned optimizer (its weights
are trained in place), the meta-optimizer, the generator of the training problems, the count
of completed epochs and the record so far (a ``TrainResult``: best weights, history, skipped
updates, the monitors' bests). ``TrainState.to_payload`` turns it, with the global torch
generator, into plain tensors and containers that ``torch.save`` writes and
``torch.load(weights_only=True)`` reads back; ``TrainState.from_payload`` is the way back. A
resumed run ends with exactly the weights of an uninterrupted one on the same machine.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..checks import positive_int, positive_number
from ..optimizers.base import LearnedOptimizer
from ..registry import spec_of
from .checkpoint import CheckpointError, atomic_write

#: the format of the training state that ``meta_train(..., state_path=...)`` writes.
STATE_FORMAT = "phys-l2o-training-state/1"


#: the truncation windows: which losses a truncation sums (see ``TruncatedBPTT``).
WINDOWS = ("after", "before")
#: the meta-objectives: what a truncation sums per step (see ``TruncatedBPTT``).
OBJECTIVES = ("loss", "log-ratio")


@dataclass
class Schedule:
    """How long and how a learned optimizer is meta-trained.

    The defaults are the paper's quadratic schedule for the HNN.

    ``objective`` is what a truncation sums per step, and what validation measures at the
    last step: the loss, averaged over problems (``None`` or ``"loss"``: the paper's), or
    ``"log-ratio"``, the log of the loss over the problem's initial loss, which does not
    depend on a task's scale of losses (for meta-training over a mixture of tasks, whose
    losses differ by orders of magnitude: a task with large losses would otherwise decide
    every meta-gradient).

    ``loss_window`` and ``validation_pool`` choose between this project's protocol and the
    original code's (``phys_l2o.experiments.protocols``): which losses a truncation sums
    (``"after"`` each update, or ``"before"``, see ``TruncatedBPTT``), and which pool of a
    task with pools (MNIST) the validation problems come from (``None``: the training task's
    own; ``"test"``: the test pool, as the original does).
    """

    epochs: int = 100
    trajectories: int = 20
    meta_batch: int = 1
    steps: int = 100
    unroll: int = 15
    meta_lr: float = 0.01
    validation_problems: int = 50
    loss_window: str = "after"
    validation_pool: str | None = None
    objective: str | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "trajectories", "meta_batch", "steps", "unroll",
                     "validation_problems"):
            positive_int(name, getattr(self, name))
        positive_number("meta_lr", self.meta_lr)
        if self.loss_window not in WINDOWS:
            raise ValueError(f"loss_window must be one of {list(WINDOWS)}, got "
                             f"{self.loss_window!r}")
        if self.objective not in (None, *OBJECTIVES):
            raise ValueError(f"objective must be one of {list(OBJECTIVES)} or left out, got "
                             f"{self.objective!r}")
        if self.validation_pool not in (None, "train", "test"):
            raise ValueError(f"validation_pool must be 'train', 'test' or left out, got "
                             f"{self.validation_pool!r}")

    def to_dict(self) -> dict:
        """The fields as plain data (a field left at ``None`` is left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


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
        monitors: per monitored task (``meta_train(..., monitors=...)``), its best epoch
            (``epoch``), validation loss (``validation``) and weights (``state``): an oracle's
            choice, which the training task's validation cannot see.
    """

    best_state: dict[str, Tensor]
    best_epoch: int
    best_validation: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    skipped_updates: int = 0
    last_state: dict[str, Tensor] | None = None
    monitors: dict[str, dict] = field(default_factory=dict)


class MetaTrainingDiverged(RuntimeError):
    """Every trajectory of an epoch diverged. ``result`` holds the best weights found before."""

    def __init__(self, message: str, result: TrainResult) -> None:
        super().__init__(message)
        self.result = result


class MetaTrainingInterrupted(KeyboardInterrupt):
    """Meta-training was interrupted (Ctrl-C). ``result`` holds the best weights found so far;
    ``state_path`` the training state to resume from (``None`` if none was being written), at
    the end of epoch ``epoch``."""

    def __init__(self, result: TrainResult, state_path: Path | None, epoch: int) -> None:
        super().__init__(f"interrupted after epoch {epoch}")
        self.result, self.state_path, self.epoch = result, state_path, epoch


def _cpu(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state_dict.items()}


def weights_of(optimizer: LearnedOptimizer) -> dict[str, Tensor]:
    """A copy of the optimizer's weights (on its device), apart from the live ones."""
    return {k: v.detach().clone() for k, v in optimizer.state_dict().items()}


@dataclass
class TrainState:
    """Everything meta-training carries from one epoch to the next.

    Attributes:
        optimizer: the learned optimizer; its weights are trained in place.
        meta_optimizer: the optimizer of those weights (Adam).
        generator: draws the training problems.
        epoch: epochs completed (0: none yet; the record holds the untrained weights').
        result: the record so far; ``result.skipped_updates`` counts the skipped meta-steps.
        clock: the ``time.perf_counter()`` reading at which the run's time (over every
            process it ran in) was zero.
    """

    optimizer: LearnedOptimizer
    meta_optimizer: torch.optim.Optimizer
    generator: torch.Generator
    epoch: int
    result: TrainResult
    clock: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        """Wall time of the run so far."""
        return time.perf_counter() - self.clock

    def stamp(self) -> TrainResult:
        """The record with its time brought up to date."""
        self.result.seconds = self.seconds()
        return self.result

    def keep_if_best(self, value: float, epoch: int) -> None:
        """Keep the current weights, those after ``epoch``, as the best if their validation
        loss ``value`` beats the best so far."""
        if value < self.result.best_validation:
            self.result.best_state = weights_of(self.optimizer)
            self.result.best_epoch, self.result.best_validation = epoch, value

    def to_payload(self, *, schedule: Schedule, seed: int, task: Any = None) -> dict[str, Any]:
        """Plain tensors and containers for ``torch.save``: this state, the global torch
        generator, and the run it belongs to (spec, seed, schedule, task), all on the CPU."""
        from .. import __version__

        result = self.stamp()
        return {
            "format": STATE_FORMAT, "epoch": self.epoch, "seed": seed, "task": task_spec(task),
            "schedule": schedule.to_dict(), "spec": spec_of(self.optimizer),
            "weights": _cpu(self.optimizer.state_dict()),
            "meta_optimizer": self.meta_optimizer.state_dict(),
            "train_generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "result": {"best_state": _cpu(result.best_state), "best_epoch": result.best_epoch,
                       "best_validation": result.best_validation, "history": result.history,
                       "seconds": result.seconds, "skipped_updates": result.skipped_updates,
                       "monitors": {name: {**best, "state": _cpu(best["state"])}
                                    for name, best in result.monitors.items()}},
            "versions": {"phys_l2o": __version__, "torch": str(torch.__version__)},
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], *, optimizer: LearnedOptimizer,
                     meta_optimizer: torch.optim.Optimizer,
                     generator: torch.Generator) -> TrainState:
        """The state of ``payload`` (``to_payload``'s), loaded into the live ``optimizer``,
        ``meta_optimizer`` and ``generator``; the global torch generator is restored too."""
        optimizer.load_state_dict(payload["weights"])
        meta_optimizer.load_state_dict(payload["meta_optimizer"])
        generator.set_state(payload["train_generator"])
        torch.set_rng_state(payload["torch_rng"])
        record = payload["result"]
        result = TrainResult(record["best_state"], record["best_epoch"],
                             record["best_validation"], list(record["history"]),
                             seconds=record["seconds"],
                             skipped_updates=record["skipped_updates"],
                             monitors=dict(record.get("monitors", {})))
        return cls(optimizer, meta_optimizer, generator, payload["epoch"], result,
                   clock=time.perf_counter() - record["seconds"])


def task_spec(task: Any) -> Any:
    """The spec of ``task`` (``None`` for none, or for a task without a spec, such as a
    ``ModuleTask``): what a training state records of its task."""
    if task is None:
        return None
    try:
        return json.loads(json.dumps(spec_of(task)))
    except (ValueError, TypeError, AttributeError):  # SpecError: not a registered task
        return None


def save_training_state(path: str | os.PathLike, state: TrainState, *, schedule: Schedule,
                        seed: int, task: Any = None) -> None:
    """Everything that an exact resume needs, at the end of ``state.epoch``, written
    atomically."""
    payload = state.to_payload(schedule=schedule, seed=seed, task=task)
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _normal(spec: dict) -> dict:
    """A saved spec as ``spec_of`` writes it today (a switch added since at its default is
    left out), or as it was if it no longer builds."""
    from ..registry import build

    try:
        return spec_of(build(spec, "optimizer"))
    except Exception:  # noqa: BLE001 - then the saved spec is compared as it is
        return spec


def load_training_state(path: str | os.PathLike, *, optimizer: LearnedOptimizer,
                        schedule: Schedule, seed: int, task: Any = None) -> dict[str, Any]:
    """Read a training state's payload and check that it belongs to this run.

    Raises:
        CheckpointError: no file, a damaged file, or a state of another run (another task,
            optimizer spec, seed or schedule; only ``epochs`` may grow); the message names
            what differs.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no training state at {path} to resume from; start without "
                              "--resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a damaged file
        raise CheckpointError(f"{path} is not a readable training state ({error}); start "
                              "again without --resume") from error
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path} is not a phys-l2o training state")
    mine = schedule.to_dict()
    # a state written before a field existed holds its default
    defaults = {f.name: f.default for f in fields(Schedule) if f.default is not None}
    theirs = {**defaults, **dict(state["schedule"])}
    differences = []
    saved_task, my_task = state.get("task"), task_spec(task)
    if saved_task is not None and my_task is not None and saved_task != my_task:
        differences.append(f"task {saved_task} (this run: {my_task})")
    if _normal(state["spec"]) != spec_of(optimizer):
        differences.append(f"optimizer {state['spec']} (this run: {spec_of(optimizer)})")
    if state["seed"] != seed:
        differences.append(f"seed {state['seed']} (this run: {seed})")
    changed = {k: (v, mine.get(k)) for k, v in theirs.items()
               if k != "epochs" and v != mine.get(k)}
    if theirs["epochs"] > mine["epochs"]:
        changed["epochs"] = (theirs["epochs"], mine["epochs"])
    differences += [f"{k} {a!r} (this run: {b!r})" for k, (a, b) in changed.items()]
    if differences:
        raise CheckpointError(
            f"{path} belongs to another run: its {'; '.join(differences)}. Resume with the "
            "same options, or start again with --overwrite")
    return state


def untrained_result(optimizer: LearnedOptimizer) -> TrainResult:
    """The record before any validation: the current weights, not yet scored."""
    return TrainResult(weights_of(optimizer), 0, math.inf)
