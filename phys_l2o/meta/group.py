"""Meta-training a group of optimizers of one spec (the seeds of a variant) as one program.

``GroupTrainer`` runs one ``MetaTrainer`` per member, each with its own seed, weights,
meta-optimizer (Adam), training generator, validation problems, callbacks and training state,
exactly as ``meta_train`` would run it alone, but the members' trajectories and validations
run as one ``Stacked`` optimizer on the members' problems side by side:

- a trajectory draws each member's meta-batch from that member's generator, and truncated
  backpropagation runs the whole group (``truncated_rollout(..., members=M)``); each
  truncation gives one meta-loss per member, back-propagated at once (a member's weights get
  only its own meta-gradient) and stepped by each member's own meta-optimizer
  (``GroupMetaStep``): a member whose meta-loss or meta-gradient is non-finite skips that
  update and sits out the rest of the trajectory, as it would alone;
- the validation problems of all members (and of their monitors) are evaluated in one rollout,
  and each member's ``MetaTrainer`` records its own values, keeps its own best weights and
  tells its own callbacks (training states, divergence);
- a member whose meta-training diverges (``MetaTrainingDiverged``) leaves the group, which goes
  on with the others.

Each member's result equals that of ``meta_train`` with the same spec, seed and schedule, up to
float rounding (``tests/test_group.py``). A group needs a task whose trajectories all run the
same steps (no mixture, no random horizons: ``groupable``), truncated backpropagation, and one
process (no data-parallel ranks).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..optimizers.base import LearnedOptimizer
from ..optimizers.stacked import Stacked
from ..tasks.base import Problems, Task
from .callbacks import Checkpointing, DivergenceCheck, Monitors
from .estimators import all_finite, truncated_rollout
from .state import (
    MetaTrainingDiverged,
    MetaTrainingInterrupted,
    Schedule,
    TrainResult,
    TrainState,
    load_training_state,
)
from .train import MetaTrainer, final_objective

__all__ = ["GroupMetaStep", "GroupTrainer", "groupable", "meta_train_group"]


def groupable(task: Task) -> bool:
    """Whether the trajectories of ``task`` can run as a group: every trajectory runs on the
    task itself for the schedule's steps (not a mixture, no random horizons)."""
    return (task.components() == [task]
            and type(task).horizon_steps is Task.horizon_steps
            and type(task).draw is Task.draw)


class GroupMetaStep:
    """One meta-update of every member from a vector of meta-losses ``(members,)``.

    A member whose meta-loss or meta-gradient is non-finite skips the update (counted in its
    ``skipped_updates``) and takes no further update in this trajectory, as ``MetaStep``
    with a trajectory that stops; the others go on.
    """

    def __init__(self, states: Sequence[TrainState]) -> None:
        self.states = list(states)
        self.active = [True] * len(self.states)

    def loss(self, losses: Tensor) -> bool:
        """Back-propagate the members' meta-losses and step each active member; returns
        whether any member is still active."""
        finite = torch.isfinite(losses.detach()).tolist()
        for m, ok in enumerate(finite):
            if self.active[m] and not ok:
                self._skip(m)
        chosen = [m for m, on in enumerate(self.active) if on]
        if not chosen:
            return False
        for state in self.states:
            state.meta_optimizer.zero_grad(set_to_none=True)
        losses[chosen].sum().backward()
        for m in chosen:
            state = self.states[m]
            grads = [p.grad for p in state.optimizer.parameters() if p.grad is not None]
            if not all_finite(grads):
                self._skip(m)
                continue
            state.meta_optimizer.step()
        return any(self.active)

    def _skip(self, m: int) -> None:
        self.states[m].result.skipped_updates += 1
        self.active[m] = False


@dataclass
class Member:
    """One member of a group: its trainer and training state, and how it ended."""

    trainer: MetaTrainer
    state: TrainState | None = None
    diverged: MetaTrainingDiverged | None = None

    @property
    def callbacks(self) -> list:
        return self.trainer.callbacks


class GroupTrainer:
    """Meta-trains ``optimizers`` (one spec, one seed each) as one program (see the module).

    Args:
        optimizers: the learned optimizers, trained in place.
        task: the problem family (``groupable``).
        schedule: the schedule every member follows.
        seeds: each member's seed.
        device: where the problems and the optimizers live.
        state_paths: each member's training state file (``None``: none written).
        monitors: other tasks to watch, as ``meta_train``'s.
        compile: run the group's steps through ``Stacked.compiled()``.

    Raises:
        ValueError: a task that cannot run as a group, or as many seeds (or state paths) as
            optimizers.
    """

    def __init__(self, optimizers: Sequence[LearnedOptimizer], task: Task, schedule: Schedule,
                 *, seeds: Sequence[int], device: torch.device | str = "cpu",
                 state_paths: Sequence[str | os.PathLike | None] | None = None,
                 monitors: Mapping[str, Task] | None = None, compile: bool = False) -> None:
        if not groupable(task):
            raise ValueError(f"{type(task).__name__} draws its tasks or horizons per trajectory: "
                             "its members cannot run as one group; meta-train them one by one")
        if len(seeds) != len(optimizers):
            raise ValueError(f"{len(optimizers)} optimizers need as many seeds, got {len(seeds)}")
        #: each member's training state file (``None``: none written)
        self.paths = [None] * len(optimizers) if state_paths is None else list(state_paths)
        if len(self.paths) != len(optimizers):
            raise ValueError(f"{len(optimizers)} optimizers need as many state paths, got "
                             f"{len(self.paths)}")
        self.task, self.schedule, self.device, self.compile = task, schedule, device, compile
        self.members = []
        for optimizer, seed, path in zip(optimizers, seeds, self.paths):
            callbacks = [Monitors(monitors or {}), DivergenceCheck(),
                         *([] if path is None else [Checkpointing(path)])]
            self.members.append(Member(MetaTrainer(optimizer, task, schedule, seed=seed,
                                                   device=device, callbacks=callbacks)))
        self.runner = self._runner()

    def _active(self) -> list[Member]:
        return [m for m in self.members if m.diverged is None]

    def _runner(self):
        stacked = Stacked([m.trainer.optimizer for m in self._active()])
        return stacked.compiled() if self.compile else stacked

    def init(self, payloads: Sequence[dict | None]) -> None:
        """Each member's first state: the untrained weights validated as epoch 0 (all at once),
        or the saved state of its payload. Members resumed from payloads must be at one epoch.
        """
        if all(p is None for p in payloads):
            self._validate_all()
        for member, payload in zip(self.members, payloads):
            member.state = member.trainer.init(payload)
            member.trainer.known.clear()
        epochs = {m.state.epoch for m in self.members}
        if len(epochs) > 1:
            raise ValueError(f"the members' training states are at different epochs "
                             f"{sorted(epochs)}: resume them one by one")

    def run(self) -> list[Member]:
        """Epochs until the schedule's last; each member's callbacks are told as if it ran
        alone. Returns the members (their states, and the error of any that diverged)."""
        try:
            for member in self.members:
                for callback in member.callbacks:
                    callback.on_start(member.trainer, member.state)
            while self._active() and self._active()[0].state.epoch < self.schedule.epochs:
                self.epoch()
        finally:
            for member in self.members:
                for callback in member.callbacks:
                    callback.on_end(member.trainer, member.state)
        for member in self.members:
            member.state.stamp()
        return self.members

    def epoch(self) -> None:
        """One epoch of every active member."""
        schedule, active = self.schedule, self._active()
        for _ in range(schedule.trajectories):
            problems = [m.trainer.task.sample(schedule.meta_batch, m.state.generator, self.device)
                        for m in active]
            truncated_rollout(self.runner, self.task, stack_problems(problems), schedule.steps,
                              schedule.unroll, GroupMetaStep([m.state for m in active]).loss,
                              window=schedule.loss_window, objective=schedule.objective,
                              members=len(active))
            for member in active:
                for callback in member.callbacks:
                    callback.on_trajectory(member.trainer, member.state)
        self._validate_all()
        for member in active:
            try:
                member.trainer.end_epoch(member.state)
            except MetaTrainingDiverged as error:
                member.diverged = error
        if any(m.diverged is not None for m in active):
            self.runner = self._runner() if self._active() else None

    def _validate_all(self) -> None:
        """Every active member's validation losses (its task's and its monitors'), computed in
        one rollout per set and handed to its trainer as ``known``."""
        active = self._active()
        sets = [member_sets(m) for m in active]
        runner = self.runner
        for k in range(len(sets[0])):
            task = sets[0][k][0]
            values = stacked_validation(runner, task, [s[k][1] for s in sets],
                                        self.schedule.steps, self.schedule.objective)
            for member, member_set, value in zip(active, sets, values):
                member.trainer.known[id(member_set[k][1])] = value


def member_sets(member: Member) -> list[tuple[Task, Problems]]:
    """The (task, problems) sets a member validates after an epoch: its task's, then its
    monitors'."""
    sets = list(member.trainer.validation)
    for callback in member.callbacks:
        if isinstance(callback, Monitors):
            sets += list(callback.sets.values())
    return sets


def stack_problems(problems: Sequence[Problems]) -> Problems:
    """The members' batches of problems side by side along the problem axis."""
    return {k: torch.cat([p[k] for p in problems]) for k in problems[0]}


def stacked_validation(runner, task: Task, problems: Sequence[Problems], steps: int,
                       objective: str | None) -> list[float]:
    """Each member's ``validation_loss`` on its own ``problems``, from one rollout of the
    stack ``runner``."""
    final = final_objective(runner, task, stack_problems(problems), steps, objective)
    totals = final.view(len(problems), -1).sum(1).tolist()
    count = final.shape[0] // len(problems)
    return [value / count if math.isfinite(value) else math.inf for value in totals]


def meta_train_group(optimizers: Sequence[LearnedOptimizer], task: Task,
                     schedule: Schedule | None = None, *, seeds: Sequence[int],
                     device: torch.device | str = "cpu",
                     state_paths: Sequence[str | os.PathLike | None] | None = None,
                     resume: bool = False, monitors: Mapping[str, Task] | None = None,
                     compile: bool = False) -> list[TrainResult | MetaTrainingDiverged]:
    """Meta-train ``optimizers`` (one spec) with ``seeds`` as one program; each ends with its
    best weights loaded, as ``meta_train`` leaves it.

    ``resume``: each member with a training state at its path continues from it (all at one
    epoch); the others start. The other arguments are ``meta_train``'s.

    Returns:
        Each member's ``TrainResult``, or its ``MetaTrainingDiverged`` (whose ``result`` holds
        the best weights before it).

    Raises:
        MetaTrainingInterrupted: on Ctrl-C (with the first member's result; every member's
            training state is on disk).
    """
    schedule = Schedule() if schedule is None else schedule
    group = GroupTrainer(optimizers, task, schedule, seeds=seeds, device=device,
                         state_paths=state_paths, monitors=monitors, compile=compile)
    payloads = [load_training_state(path, optimizer=optimizer, schedule=schedule, seed=seed,
                                    task=task)
                if resume and path is not None and os.path.isfile(path) else None
                for optimizer, seed, path in zip(optimizers, seeds, group.paths)]
    group.init(payloads)
    try:
        members = group.run()
    except KeyboardInterrupt as interrupt:
        first = group.members[0]
        result = first.state.stamp()
        for member in group.members:
            member.trainer.optimizer.load_state_dict(member.state.result.best_state)
        saved = next((c.saved_epoch for c in first.callbacks if isinstance(c, Checkpointing)),
                     first.state.epoch)
        raise MetaTrainingInterrupted(result, group.paths[0], saved) from interrupt
    out: list[TrainResult | MetaTrainingDiverged] = []
    for member in members:
        if member.diverged is not None:
            member.trainer.optimizer.load_state_dict(member.diverged.result.best_state)
            out.append(member.diverged)
        else:
            member.trainer.optimizer.load_state_dict(member.state.result.best_state)
            out.append(member.state.result)
    return out
