"""Meta-training: a training state moved epoch by epoch by a gradient estimator.

``MetaTrainer`` holds what does not change during a run (the optimizer to roll out with, the
task, the schedule, the validation problems, the estimator, the callbacks, the ranks);
``init`` gives the first ``TrainState`` (the untrained weights validated as epoch 0) or the
one of a saved payload, and ``epoch`` moves a state by one epoch: ``trajectories``
trajectories, each a fresh meta-batch drawn from the state's generator (of the task the
trajectory draws, when the task is a distribution over tasks) and handed to the estimator
(``TruncatedBPTT`` by default), then the mean final-step loss (or the schedule's objective)
on the fixed validation problems, which decides whether the weights are the best so far.
``run`` calls ``epoch`` until the schedule ends, telling the callbacks (progress, monitors,
divergence, training states: ``callbacks.py``).

``meta_train`` is the convenience shared by the command line, the sweeps and the tutorial:
it builds the trainer and its usual callbacks, resumes or starts, runs, and hands the
optimizer back with its best weights loaded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..checks import positive_int
from ..optimizers.base import CompiledOptimizer, LearnedOptimizer, Optimizer
from ..parallel import Ranks
from ..registry import build_part, copy_with
from ..seeding import make_generator
from ..tasks.augment import AugmentedTask
from ..tasks.base import Problems, Task, select
from .callbacks import Callback, Checkpointing, DivergenceCheck, Monitors, Progress
from .estimators import GradientEstimator, MetaStep, TruncatedBPTT, log_ratio
from .evaluate import evaluate
from .state import (
    MetaTrainingDiverged,
    MetaTrainingInterrupted,
    Schedule,
    TrainResult,
    TrainState,
    load_training_state,
    untrained_result,
    weights_of,
)

__all__ = ["MetaTrainer", "final_objective", "meta_train", "validation_loss"]


def final_objective(optimizer: Optimizer, task: Task, problems: Problems, steps: int,
                    objective: str | None = None) -> Tensor:
    """Each problem's validation term ``(batch,)``: its loss after ``steps`` steps, or with
    ``objective="log-ratio"`` the log of that loss over its initial loss."""
    final = evaluate(optimizer, task, problems, steps)[:, -1]
    if objective == "log-ratio":
        initial, _ = task.loss_and_grad(task.init_params(problems), problems, 0)
        final = log_ratio(final, initial)
    return final


def validation_loss(optimizer: Optimizer, task: Task, problems: Problems, steps: int,
                    ranks: Ranks | None = None, objective: str | None = None) -> float:
    """Mean final-step loss on the validation problems (``inf`` if any diverged); with
    ``objective="log-ratio"``, the mean of ``log(final loss / initial loss)``. With several
    ``ranks``, each evaluates its share of the problems."""
    ranks = Ranks() if ranks is None else ranks
    first = next(iter(problems.values()))
    count, mine = len(first), ranks.shard(len(first))
    if mine.stop > mine.start:
        total = final_objective(optimizer, task, select(problems, mine), steps, objective).sum()
    else:  # more ranks than problems: this one has none
        total = torch.zeros((), device=first.device)
    value = float(ranks.sum(total)) / count
    return value if math.isfinite(value) else math.inf


class MetaTrainer:
    """The fixed parts of a meta-training run; ``init`` and ``epoch`` move its ``TrainState``.

    Args:
        optimizer: the learned optimizer (its weights are trained in place); it is moved to
            ``device``.
        task: the problem family to meta-train on.
        schedule: epochs, trajectories, truncation and meta learning rate.
        seed: the master seed of the training and validation problems.
        device: where the problems and the optimizer live.
        estimator: turns a trajectory into meta-updates (default:
            ``TruncatedBPTT(schedule.unroll, schedule.loss_window, schedule.objective)``); one
            whose objective is left out takes the schedule's.
        callbacks: the parts of the loop, told of its moments in this order.
        ranks: this process's place in a data-parallel run (see ``meta_train``).
        compile: roll out (training and validation) with one ``optimizer.compiled()``
            wrapper, so that its compiled code is reused across epochs.

    A task may be a distribution over tasks (``TaskMixture``): each trajectory draws its task
    (and, for an augmented task, its horizon) from the state's generator, and validation is
    the mean over the mixture's tasks, each on its own fixed problems.

    Raises:
        SuiteError: the task is, or holds, a task of the held-out suite (``refuse_heldout``).
    """

    def __init__(self, optimizer: LearnedOptimizer, task: Task, schedule: Schedule, *,
                 seed: int = 0, device: torch.device | str = "cpu",
                 estimator: GradientEstimator | None = None,
                 callbacks: Sequence[Callback] = (), ranks: Ranks | None = None,
                 compile: bool = False) -> None:
        self.ranks = Ranks() if ranks is None else ranks
        if schedule.meta_batch % self.ranks.world:
            raise ValueError(f"meta_batch {schedule.meta_batch} does not split evenly over "
                             f"{self.ranks.world} processes; use a multiple of "
                             f"{self.ranks.world}")
        self.optimizer, self.task, self.schedule = optimizer.to(device), task, schedule
        self.seed, self.device = seed, device
        self.runner: LearnedOptimizer | CompiledOptimizer = \
            optimizer.compiled() if compile else optimizer
        if estimator is None:
            estimator = TruncatedBPTT(schedule.unroll, schedule.loss_window, schedule.objective)
        elif getattr(estimator, "objective", "") is None and schedule.objective is not None:
            estimator = copy_with(estimator, objective=schedule.objective)  # the schedule's
        self.estimator = estimator
        self.callbacks = list(callbacks)
        refuse_heldout(task)
        #: one validation set per task a trajectory may run on (a mixture's tasks; the
        #: first, and for one task the only, from the stream of a single task's run)
        self.validation = [self.validation_set(t, "validation" if k == 0 else
                                               f"validation-{k}")
                           for k, t in enumerate(task.components())]
        #: validation losses already computed, by the ``id`` of their problems: a group of
        #: optimizers (``meta.group``) validates all its members' problems at once
        self.known: dict[int, float] = {}
        for callback in self.callbacks:
            callback.setup(self)

    def validation_set(self, task: Task, stream: str) -> tuple[Task, Problems]:
        """The task validated (its validation pool, if the schedule names one) and its fixed
        problems, drawn from the named stream of the seed."""
        pool = self.schedule.validation_pool
        task = task if pool is None else task.with_pool(pool)
        return task, task.sample(self.schedule.validation_problems,
                                 make_generator(self.seed, stream), self.device)

    def validate(self, task: Task, problems: Problems) -> float:
        """``validation_loss`` of the current weights on ``problems`` of ``task`` (the
        schedule's objective), or the value ``known`` for these problems."""
        if id(problems) in self.known:
            return self.known.pop(id(problems))
        return validation_loss(self.runner, task, problems, self.schedule.steps, self.ranks,
                               self.schedule.objective)

    def init(self, payload: dict | None = None) -> TrainState:
        """The first state: the untrained weights validated as epoch 0, or, from a payload
        (``TrainState.to_payload``'s, checked by ``load_training_state``), the saved one."""
        generator = make_generator(self.seed, "meta-train")
        meta_optimizer = torch.optim.Adam(self.optimizer.parameters(), lr=self.schedule.meta_lr)
        if payload is not None:
            return TrainState.from_payload(payload, optimizer=self.optimizer,
                                           meta_optimizer=meta_optimizer, generator=generator)
        state = TrainState(self.optimizer, meta_optimizer, generator, 0,
                           untrained_result(self.optimizer))
        state.result.history.append(self._validated(state, 0))
        return state

    def epoch(self, state: TrainState) -> TrainState:
        """``state`` after one more epoch (its live optimizers and generator move in place)."""
        schedule, meta_step = self.schedule, MetaStep(state, self.ranks)
        share = self.ranks.shard(schedule.meta_batch)
        for _ in range(schedule.trajectories):
            # a mixture draws its task, an augmented task its horizon; a task draws neither
            task = self.task.draw(state.generator)
            steps = task.horizon_steps(state.generator, schedule.steps)
            problems = task.sample(schedule.meta_batch, state.generator, self.device)
            if self.ranks.world > 1:
                problems = select(problems, share)
            self.estimator.trajectory(self.runner, task, problems, steps, meta_step)
            for callback in self.callbacks:
                callback.on_trajectory(self, state)
        return self.end_epoch(state)

    def end_epoch(self, state: TrainState) -> TrainState:
        """Validate the weights of the epoch just trained, record it and tell the callbacks."""
        record = self._validated(state, state.epoch + 1)
        record["seconds"] = state.seconds()
        state.result.history.append(record)
        state.epoch += 1
        for callback in self.callbacks:
            callback.on_epoch(self, state)
        return state

    def run(self, state: TrainState) -> TrainState:
        """Epochs until the schedule's last, telling the callbacks."""
        try:
            for callback in self.callbacks:
                callback.on_start(self, state)
            while state.epoch < self.schedule.epochs:
                state = self.epoch(state)
        finally:
            for callback in self.callbacks:
                callback.on_end(self, state)
        state.stamp()
        return state

    def _validated(self, state: TrainState, epoch: int) -> dict:
        """The history entry of the weights after ``epoch`` (the callbacks add to it); they
        are kept if they are the best so far."""
        values = [self.validate(task, problems) for task, problems in self.validation]
        value = sum(values) / len(values)
        record = {"epoch": epoch, "validation": value}
        for callback in self.callbacks:
            callback.on_validation(self, state, record)
        state.keep_if_best(value, epoch)
        return record


def refuse_heldout(task: Task) -> None:
    """Refuse a task of the held-out suite, or a mixture holding one, as a meta-training
    task (``phys_l2o.bench.check_not_heldout``): its scores there would stop measuring
    generalization."""
    from ..bench.suite import check_not_heldout

    for component in task.components():
        if isinstance(component, AugmentedTask):  # the same problems in other units
            component = component.task
        check_not_heldout(component)


def meta_train(optimizer: LearnedOptimizer, task: Task, schedule: Schedule | None = None, *,
               seed: int = 0, device: torch.device | str = "cpu", progress: bool = True,
               keep_last: bool = False, state_path: str | os.PathLike | None = None,
               state_every: int = 1, resume: bool = False,
               monitors: Mapping[str, Task] | None = None,
               ranks: Ranks | None = None, compile: bool = False,
               estimator: GradientEstimator | Mapping | str | None = None) -> TrainResult:
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
        progress: show a progress bar (with the count of diverged truncations).
        keep_last: also keep the weights of the last epoch in ``result.last_state``.
        state_path: write the training state there (atomically) every ``state_every`` epochs
            and at the end: weights, meta-optimizer, random generators, best weights and
            history, so that a killed run can be resumed exactly.
        state_every: epochs between two training states.
        resume: continue from the training state at ``state_path`` (same optimizer spec, seed
            and schedule; ``epochs`` may grow). The resumed run ends with exactly the weights
            of an uninterrupted one on the same machine.
        monitors: other tasks to watch (e.g. the ReLU net while training on the sigmoid one):
            after every epoch each is validated like the training task, on its own fixed
            problems (from the validation pool), and recorded in ``history``; the weights of
            each one's best epoch are kept in ``result.monitors``. They choose nothing.
        ranks: this process's place in a data-parallel run (``parallel.distributed``):
            every rank draws the same meta-batch and optimizes its share of it, the
            meta-gradients are averaged across ranks before each meta-step, validation is
            sharded, and rank 0 alone shows progress and writes the training state. The
            weights equal those of one process with the whole meta-batch, up to float
            rounding. ``None``: one process.
        compile: roll out with one ``optimizer.compiled()`` wrapper (training truncations and
            validation, so its compiled code is reused across epochs); the weights, the spec
            and the meta-optimizer are the optimizer's own.
        estimator: how a trajectory becomes meta-updates: an estimator or its spec
            (``{"type": "pes", "unroll": 10}``; kind ``estimator``); ``None`` is truncated
            backpropagation with the schedule's truncation, window and objective.

    Raises:
        MetaTrainingDiverged: if every trajectory of an epoch produced a non-finite
            meta-loss (lower the meta learning rate or ``out_mul``); the optimizer holds
            the best weights found before.
        MetaTrainingInterrupted: on Ctrl-C (a ``KeyboardInterrupt``); the optimizer holds
            the best weights so far, and the last training state is on disk.
        CheckpointError: ``resume`` without a matching training state.
        RuntimeError: ``compile`` for an optimizer that cannot be compiled here.
    """
    schedule = Schedule() if schedule is None else schedule
    positive_int("state_every", state_every)
    if resume and state_path is None:
        raise ValueError("resume needs the state_path of the run to continue")
    ranks = Ranks() if ranks is None else ranks
    checkpointing = None if state_path is None else Checkpointing(state_path, state_every)
    callbacks = [Monitors(monitors or {}), Progress(progress), DivergenceCheck(),
                 *([checkpointing] if checkpointing else [])]
    if estimator is not None:
        estimator = build_part(estimator, "estimator")
    trainer = MetaTrainer(optimizer, task, schedule, seed=seed, device=device,
                          estimator=estimator, callbacks=callbacks, ranks=ranks,
                          compile=compile)
    payload = None
    if resume:  # rank 0 reads the state (its file need not be visible to the other machines)
        payload = ranks.share(load_training_state(state_path, optimizer=optimizer,
                                                  schedule=schedule, seed=seed, task=task)
                              if ranks.main else None)
    state = trainer.init(payload)
    try:
        state = trainer.run(state)
    except MetaTrainingDiverged as error:
        optimizer.load_state_dict(error.result.best_state)
        raise
    except KeyboardInterrupt as interrupt:
        result = state.stamp()
        optimizer.load_state_dict(result.best_state)
        if checkpointing is None:
            raise MetaTrainingInterrupted(result, None, state.epoch) from interrupt
        raise MetaTrainingInterrupted(result, Path(state_path),
                                      checkpointing.saved_epoch) from interrupt
    if keep_last:
        state.result.last_state = weights_of(optimizer)
    optimizer.load_state_dict(state.result.best_state)
    return state.result
