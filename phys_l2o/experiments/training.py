"""Meta-training one variant: the one path that ``phys-l2o train`` and every learned cell of a
sweep take (``train_variant``), the one rule for when to compile (``use_compile``), and how an
optimizer spec is built with seeded weights (``build_seeded``; a task spec is built where it
runs by ``phys_l2o.tasks.base.build_task``)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..meta import MetaTrainingDiverged, Schedule, TrainResult, meta_train
from ..meta.group import meta_train_group
from ..optimizers.base import CompiledOptimizer, LearnedOptimizer, compile_available
from ..optimizers.stacked import Stacked
from ..registry import Spec, build
from ..seeding import derive_seed
from ..tasks.base import Task

#: a meta-training is compiled (auto) when it has at least this many trajectories: enough to
#: pay back the seconds of compilation.
COMPILE_FROM_TRAJECTORIES = 200


def use_compile(requested: bool | None, optimizer: LearnedOptimizer, schedule: Schedule) -> bool:
    """Whether to run ``optimizer``'s steps through ``torch.compile`` for ``schedule``.

    ``requested`` is the user's choice (``--compile`` / ``--no-compile``); ``None`` (auto)
    compiles a meta-training of at least ``COMPILE_FROM_TRAJECTORIES`` trajectories when a C++
    compiler is found and no piece of the optimizer is uncompilable.
    """
    if requested is not None:
        return requested
    return (schedule.epochs * schedule.trajectories >= COMPILE_FROM_TRAJECTORIES
            and compile_available() and not optimizer.uncompilable_pieces())


def build_seeded(spec: Spec, seed: int, stream: str) -> LearnedOptimizer:
    """Build a learned optimizer from ``spec`` with its weights drawn from the seed's
    ``stream`` (the global random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, stream))
        return build(spec, "optimizer")


@dataclass
class Trained:
    """A meta-trained variant.

    ``optimizer`` holds its best weights; ``evaluator`` is what to evaluate it with (its
    compiled wrapper when ``compiled``); ``diverged`` the error of a meta-training that ended
    because every trajectory of an epoch diverged (``result`` then holds the best weights
    before it); ``earlier_seconds`` the meta-training time of the processes before this one
    (a resumed run)."""

    optimizer: LearnedOptimizer
    evaluator: LearnedOptimizer | CompiledOptimizer
    result: TrainResult
    compiled: bool
    diverged: MetaTrainingDiverged | None = None
    earlier_seconds: float = 0.0


def train_variant(spec: Spec, task: Task, schedule: Schedule, *, seed: int,
                  device: torch.device | str = "cpu", compile: bool | None = None,
                  state_path: str | os.PathLike | None = None, resume: bool = False,
                  state_every: int = 1, monitors: Mapping[str, Task] | None = None,
                  ranks: Any = None, progress: bool = False,
                  estimator: Any = None) -> Trained:
    """Meta-train a fresh optimizer of ``spec`` (its weights drawn from ``seed``) on ``task``.

    The weights start from the seed's ``init-<type>`` stream and meta-training uses ``seed``,
    so the same spec, task, schedule and seed give the same weights whoever calls this.
    ``compile``: see ``use_compile``. The other arguments are ``meta_train``'s.

    Raises:
        ValueError: ``compile=True`` for an optimizer that cannot be compiled here.
        MetaTrainingInterrupted: on Ctrl-C (the training state is at ``state_path``).
    """
    optimizer = build_seeded(spec, seed, f"init-{spec['type']}")
    compiled = use_compile(compile, optimizer, schedule)
    evaluator: LearnedOptimizer | CompiledOptimizer = optimizer
    if compiled:
        try:
            evaluator = optimizer.compiled()
        except RuntimeError as error:
            raise ValueError(str(error)) from None
        torch._dynamo.reset()  # one variant's compiled steps do not count against the next's
    began = time.perf_counter()
    diverged = None
    try:
        result = meta_train(optimizer, task, schedule, seed=seed, device=device,
                            progress=progress, state_path=state_path, state_every=state_every,
                            resume=resume, monitors=monitors, ranks=ranks, compile=compiled,
                            estimator=estimator)
    except MetaTrainingDiverged as error:  # the optimizer holds the best weights before
        result, diverged = error.result, error
    earlier = max(0.0, result.seconds - (time.perf_counter() - began))
    return Trained(optimizer, evaluator, result, compiled, diverged, earlier)


def train_group(spec: Spec, task: Task, schedule: Schedule, *, seeds: list[int],
                device: torch.device | str = "cpu", compile: bool | None = None,
                state_paths: list[str | os.PathLike] | None = None,
                monitors: Mapping[str, Task] | None = None
                ) -> tuple[list[Trained], Stacked | CompiledOptimizer]:
    """Meta-train fresh optimizers of ``spec``, one per seed, as one group
    (``meta.group.meta_train_group``): each member's weights and result are those of
    ``train_variant`` with its seed, up to float rounding. A member with a training state at
    its path resumes from it.

    Returns:
        Each member's ``Trained``, and what to evaluate the members with: their ``Stacked``
        optimizer (compiled when the members were).
    """
    optimizers = [build_seeded(spec, seed, f"init-{spec['type']}") for seed in seeds]
    compiled = use_compile(compile, optimizers[0], schedule)
    if compiled:
        torch._dynamo.reset()
    began = time.perf_counter()
    outcomes = meta_train_group(optimizers, task, schedule, seeds=seeds, device=device,
                                state_paths=state_paths, resume=True, monitors=monitors,
                                compile=compiled)
    trained = []
    for optimizer, outcome in zip(optimizers, outcomes):
        diverged = outcome if isinstance(outcome, MetaTrainingDiverged) else None
        result = outcome.result if diverged is not None else outcome
        earlier = max(0.0, result.seconds - (time.perf_counter() - began))
        trained.append(Trained(optimizer, optimizer, result, compiled, diverged, earlier))
    stacked = Stacked(optimizers)
    return trained, (stacked.compiled() if compiled else stacked)
