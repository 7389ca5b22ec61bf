"""The small parts of the meta-training loop: progress, monitors, divergence, training states.

A ``Callback`` is told of the loop's moments, in the order the callbacks were given:

- ``on_validation(trainer, state, record)``: the training task was validated after epoch
  ``record["epoch"]`` (0: the untrained weights); ``record`` is the history entry being made,
  to which a callback may add.
- ``on_start(trainer, state)``: the epochs begin (from ``state.epoch``).
- ``on_trajectory(trainer, state)``: a trajectory was trained.
- ``on_epoch(trainer, state)``: epoch ``state.epoch`` is recorded; a callback may end the
  run by raising.
- ``on_end(trainer, state)``: the run ends, normally or by an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from tqdm.auto import tqdm

from ..checks import positive_int
from ..optimizers.base import LearnedOptimizer
from ..parallel import Ranks
from ..tasks.base import Problems, Task
from .state import MetaTrainingDiverged, Schedule, TrainState, save_training_state, weights_of


class MetaTrainer(Protocol):
    """What a callback may use of the loop that calls it (``phys_l2o.meta.train.MetaTrainer``
    keeps it): the run's fixed parts and its validation."""

    optimizer: LearnedOptimizer
    schedule: Schedule
    seed: int
    ranks: Ranks

    def validation_set(self, task: Task, stream: str) -> tuple[Task, Problems]: ...

    def validate(self, task: Task, problems: Problems) -> float: ...


class Callback:
    """A part of the loop; every moment does nothing unless overridden (see the module)."""

    def setup(self, trainer: MetaTrainer) -> None:
        """Once, when ``trainer`` is built."""

    def on_validation(self, trainer: MetaTrainer, state: TrainState, record: dict) -> None:
        pass

    def on_start(self, trainer: MetaTrainer, state: TrainState) -> None:
        pass

    def on_trajectory(self, trainer: MetaTrainer, state: TrainState) -> None:
        pass

    def on_epoch(self, trainer: MetaTrainer, state: TrainState) -> None:
        pass

    def on_end(self, trainer: MetaTrainer, state: TrainState) -> None:
        pass


class Monitors(Callback):
    """Other tasks to watch: after every validation each is validated like the training task,
    on its own fixed problems (stream ``monitor-<name>``), its loss is added to the history
    entry (``record["monitors"]``) and the weights of its best epoch are kept in
    ``state.result.monitors``. They choose nothing."""

    def __init__(self, tasks: Mapping[str, Task]) -> None:
        self.tasks = dict(tasks)
        self.sets: dict[str, tuple[Task, Problems]] = {}

    def setup(self, trainer: MetaTrainer) -> None:
        self.sets = {name: trainer.validation_set(task, f"monitor-{name}")
                     for name, task in self.tasks.items()}

    def on_validation(self, trainer: MetaTrainer, state: TrainState, record: dict) -> None:
        if not self.sets:
            return
        values = {name: trainer.validate(task, problems)
                  for name, (task, problems) in self.sets.items()}
        record["monitors"] = values
        for name, value in values.items():
            best = state.result.monitors.get(name)
            if best is None or value < best["validation"]:
                state.result.monitors[name] = {"epoch": record["epoch"], "validation": value,
                                               "state": weights_of(state.optimizer)}


class Progress(Callback):
    """A progress bar over the trajectories, with the validation losses and the count of
    skipped (diverged) truncations; shown on rank 0 only, and only if ``enabled``."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled, self.bar = enabled, None

    def on_start(self, trainer: MetaTrainer, state: TrainState) -> None:
        schedule = trainer.schedule
        self.bar = tqdm(total=schedule.epochs * schedule.trajectories,
                        disable=not (self.enabled and trainer.ranks.main),
                        initial=state.epoch * schedule.trajectories,
                        desc=f"meta-train {getattr(state.optimizer, 'name', 'optimizer')}",
                        unit="traj")

    def on_trajectory(self, trainer: MetaTrainer, state: TrainState) -> None:
        self.bar.update(1)

    def on_epoch(self, trainer: MetaTrainer, state: TrainState) -> None:
        result = state.result
        self.bar.set_postfix(val=f"{result.history[-1]['validation']:.4g}",
                             best=f"{result.best_validation:.4g}",
                             diverged=result.skipped_updates)

    def on_end(self, trainer: MetaTrainer, state: TrainState) -> None:
        if self.bar is not None:
            self.bar.close()


class DivergenceCheck(Callback):
    """Ends the run with ``MetaTrainingDiverged`` when every trajectory of an epoch skipped a
    meta-update for a non-finite meta-loss or meta-gradient."""

    def __init__(self) -> None:
        self.skipped_before = 0

    def on_start(self, trainer: MetaTrainer, state: TrainState) -> None:
        self.skipped_before = state.result.skipped_updates

    def on_epoch(self, trainer: MetaTrainer, state: TrainState) -> None:
        result = state.result
        diverged = result.skipped_updates - self.skipped_before
        self.skipped_before = result.skipped_updates
        if diverged >= trainer.schedule.trajectories:
            raise MetaTrainingDiverged(
                f"meta-training diverged: every trajectory of epoch {state.epoch} produced a "
                f"non-finite meta-loss (meta_lr={trainer.schedule.meta_lr}, "
                f"out_mul={getattr(state.optimizer, 'out_mul', '?')}). Lower the meta learning "
                f"rate or out_mul. The best weights so far (epoch {result.best_epoch}) are in "
                "this error's `result`.", state.stamp())


class Checkpointing(Callback):
    """Writes the training state to ``path`` (atomically, rank 0 only) before the first epoch,
    every ``every`` epochs and after the last, so that a killed run can be resumed exactly.

    ``saved_epoch`` is the epoch of the last state written (or read, for a resumed run)."""

    def __init__(self, path: str | os.PathLike, every: int = 1) -> None:
        positive_int("state_every", every)
        self.path, self.every = Path(path), every
        self.saved_epoch = 0

    def on_start(self, trainer: MetaTrainer, state: TrainState) -> None:
        self.saved_epoch = state.epoch
        if state.epoch == 0:
            self.save(trainer, state)

    def on_epoch(self, trainer: MetaTrainer, state: TrainState) -> None:
        if state.epoch % self.every == 0 or state.epoch == trainer.schedule.epochs:
            self.save(trainer, state)

    def save(self, trainer: MetaTrainer, state: TrainState) -> None:
        if trainer.ranks.main:
            save_training_state(self.path, state, schedule=trainer.schedule, seed=trainer.seed,
                                task=trainer.task)
        else:
            state.stamp()
        self.saved_epoch = state.epoch
