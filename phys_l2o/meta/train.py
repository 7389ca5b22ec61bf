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
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..checks import positive_int, positive_number
from ..optimizers.base import LearnedOptimizer, Optimizer
from ..parallel import Ranks
from ..registry import spec_of
from ..seeding import make_generator
from ..tasks.base import Problems, Task, select
from .checkpoint import CheckpointError, atomic_write
from .evaluate import evaluate
from .rollout import WINDOWS, rollout


@dataclass
class Schedule:
    """How long and how a learned optimizer is meta-trained.

    The defaults are the paper's quadratic schedule for the HNN.

    ``loss_window`` and ``validation_pool`` choose between this project's protocol and the
    original code's (``phys_l2o.protocols``): which losses a truncation sums (``"after"`` each
    update, or ``"before"``, see ``rollout``), and which pool of a task with pools (MNIST) the
    validation problems come from (``None``: the training task's own; ``"test"``: the test pool,
    as the original does).
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

    def __post_init__(self) -> None:
        for name in ("epochs", "trajectories", "meta_batch", "steps", "unroll",
                     "validation_problems"):
            positive_int(name, getattr(self, name))
        positive_number("meta_lr", self.meta_lr)
        if self.loss_window not in WINDOWS:
            raise ValueError(f"loss_window must be one of {list(WINDOWS)}, got "
                             f"{self.loss_window!r}")
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


#: the format of the training state that ``meta_train(..., state_path=...)`` writes.
STATE_FORMAT = "phys-l2o-training-state/1"


def validation_loss(optimizer: Optimizer, task: Task, problems: Problems, steps: int,
                    ranks: Ranks | None = None) -> float:
    """Mean final-step loss on the validation problems (``inf`` if any diverged); with several
    ``ranks``, each evaluates its share of the problems."""
    ranks = Ranks() if ranks is None else ranks
    first = next(iter(problems.values()))
    count, mine = len(first), ranks.shard(len(first))
    if mine.stop > mine.start:
        total = evaluate(optimizer, task, select(problems, mine), steps)[:, -1].sum()
    else:  # more ranks than problems: this one has none
        total = torch.zeros((), device=first.device)
    value = float(ranks.sum(total)) / count
    return value if math.isfinite(value) else math.inf


def _cpu(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state_dict.items()}


def save_training_state(path: str | os.PathLike, *, optimizer: LearnedOptimizer,
                        meta_opt: torch.optim.Optimizer, train_gen: torch.Generator,
                        epoch: int, result: TrainResult, schedule: Schedule, seed: int) -> None:
    """Everything that an exact resume needs, at the end of ``epoch``, written atomically."""
    from .. import __version__

    payload = {
        "format": STATE_FORMAT, "epoch": epoch, "seed": seed, "schedule": schedule.to_dict(),
        "spec": spec_of(optimizer), "weights": _cpu(optimizer.state_dict()),
        "meta_optimizer": meta_opt.state_dict(), "train_generator": train_gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "result": {"best_state": _cpu(result.best_state), "best_epoch": result.best_epoch,
                   "best_validation": result.best_validation, "history": result.history,
                   "seconds": result.seconds, "skipped_updates": result.skipped_updates,
                   "monitors": {name: {**best, "state": _cpu(best["state"])}
                                for name, best in result.monitors.items()}},
        "versions": {"phys_l2o": __version__, "torch": str(torch.__version__)},
    }
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
                        schedule: Schedule, seed: int) -> dict:
    """Read a training state and check that it belongs to this run.

    Raises:
        CheckpointError: no file, a damaged file, or a state of another run (another
            optimizer spec, seed or schedule; only ``epochs`` may grow).
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
    if _normal(state["spec"]) != spec_of(optimizer) or state["seed"] != seed or \
            {k: v for k, v in theirs.items() if k != "epochs"} != \
            {k: v for k, v in mine.items() if k != "epochs"} or theirs["epochs"] > mine["epochs"]:
        raise CheckpointError(
            f"{path} belongs to another run (its spec, seed or schedule differ: saved seed "
            f"{state['seed']}, schedule {theirs}; this run: seed {seed}, schedule {mine}); "
            "resume with the same options, or start again with --overwrite")
    return state


def meta_train(optimizer: LearnedOptimizer, task: Task, schedule: Schedule | None = None, *,
               seed: int = 0, device: torch.device | str = "cpu", progress: bool = True,
               keep_last: bool = False, state_path: str | os.PathLike | None = None,
               state_every: int = 1, resume: bool = False,
               monitors: Mapping[str, Task] | None = None,
               ranks: Ranks | None = None) -> TrainResult:
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

    Raises:
        MetaTrainingDiverged: if every trajectory of an epoch produced a non-finite
            meta-loss (lower the meta learning rate or ``out_mul``); the optimizer holds
            the best weights found before.
        MetaTrainingInterrupted: on Ctrl-C (a ``KeyboardInterrupt``); the optimizer holds
            the best weights so far, and the last training state is on disk.
        CheckpointError: ``resume`` without a matching training state.
    """
    schedule = Schedule() if schedule is None else schedule
    positive_int("state_every", state_every)
    if resume and state_path is None:
        raise ValueError("resume needs the state_path of the run to continue")
    ranks = Ranks() if ranks is None else ranks
    if schedule.meta_batch % ranks.world:
        raise ValueError(f"meta_batch {schedule.meta_batch} does not split evenly over "
                         f"{ranks.world} processes; use a multiple of {ranks.world}")
    share = ranks.shard(schedule.meta_batch)
    optimizer.to(device)
    train_gen = make_generator(seed, "meta-train")
    pool = schedule.validation_pool

    def validation_set(watched: Task, stream: str) -> tuple[Task, Problems]:
        watched = watched if pool is None else watched.with_pool(pool)
        return watched, watched.sample(schedule.validation_problems,
                                       make_generator(seed, stream), device)

    validation_task, validation = validation_set(task, "validation")
    watched = {name: validation_set(t, f"monitor-{name}")
               for name, t in (monitors or {}).items()}

    def validate() -> tuple[float, dict[str, float]]:
        return (validation_loss(optimizer, validation_task, validation, schedule.steps, ranks),
                {name: validation_loss(optimizer, t, problems, schedule.steps, ranks)
                 for name, (t, problems) in watched.items()})

    def watch(epoch: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            best = result.monitors.get(name)
            if best is None or value < best["validation"]:
                result.monitors[name] = {"epoch": epoch, "validation": value,
                                         "state": copy.deepcopy(optimizer.state_dict())}
    meta_opt = torch.optim.Adam(optimizer.parameters(), lr=schedule.meta_lr)
    start = time.perf_counter()
    first_epoch, elapsed = 1, 0.0
    if resume:
        # rank 0 reads the state (its file need not be visible to the other machines)
        saved = ranks.share(load_training_state(state_path, optimizer=optimizer,
                                                schedule=schedule, seed=seed)
                            if ranks.main else None)
        optimizer.load_state_dict(saved["weights"])
        meta_opt.load_state_dict(saved["meta_optimizer"])
        train_gen.set_state(saved["train_generator"])
        torch.set_rng_state(saved["torch_rng"])
        record = saved["result"]
        result = TrainResult(record["best_state"], record["best_epoch"],
                             record["best_validation"], list(record["history"]),
                             skipped_updates=record["skipped_updates"],
                             monitors=dict(record.get("monitors", {})))
        first_epoch, elapsed = saved["epoch"] + 1, record["seconds"]
    else:
        best, values = validate()
        result = TrainResult(copy.deepcopy(optimizer.state_dict()), 0, best,
                             [{"epoch": 0, "validation": best,
                               **({"monitors": values} if values else {})}])
        watch(0, values)
    skipped = result.skipped_updates

    def meta_step(meta_loss: Tensor) -> bool:
        nonlocal skipped
        if not ranks.all(torch.isfinite(meta_loss)):
            skipped += 1
            return False
        meta_opt.zero_grad(set_to_none=True)
        meta_loss.backward()
        grads = [p.grad for p in optimizer.parameters() if p.grad is not None]
        ranks.average(grads)  # identical on every rank from here on
        # one host synchronisation per truncation, none per step
        if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
            skipped += 1
            return False
        meta_opt.step()
        return True

    def record_time() -> None:
        result.seconds = elapsed + time.perf_counter() - start
        result.skipped_updates = skipped

    saved_epoch = completed = first_epoch - 1

    def save(epoch: int) -> None:
        nonlocal saved_epoch
        if state_path is not None:
            record_time()
            if ranks.main:
                save_training_state(state_path, optimizer=optimizer, meta_opt=meta_opt,
                                    train_gen=train_gen, epoch=epoch, result=result,
                                    schedule=schedule, seed=seed)
            saved_epoch = epoch

    bar = tqdm(total=schedule.epochs * schedule.trajectories,
               disable=not (progress and ranks.main),
               initial=(first_epoch - 1) * schedule.trajectories,
               desc=f"meta-train {getattr(optimizer, 'name', 'optimizer')}", unit="traj")
    try:
        if not resume:
            save(0)
        for epoch in range(first_epoch, schedule.epochs + 1):
            diverged_before = skipped
            for _ in range(schedule.trajectories):
                problems = task.sample(schedule.meta_batch, train_gen, device)
                if ranks.world > 1:
                    problems = select(problems, share)
                rollout(optimizer, task, problems, schedule.steps,
                        truncation=schedule.unroll, meta_step=meta_step,
                        window=schedule.loss_window)
                bar.update(1)
            value, values = validate()
            result.history.append({"epoch": epoch, "validation": value,
                                   **({"monitors": values} if values else {}),
                                   "seconds": elapsed + time.perf_counter() - start})
            watch(epoch, values)
            if value < result.best_validation:
                result.best_state = copy.deepcopy(optimizer.state_dict())
                result.best_epoch, result.best_validation = epoch, value
            bar.set_postfix(val=f"{value:.4g}", best=f"{result.best_validation:.4g}",
                            diverged=skipped)
            if skipped - diverged_before >= schedule.trajectories:
                record_time()
                optimizer.load_state_dict(result.best_state)
                raise MetaTrainingDiverged(
                    f"meta-training diverged: every trajectory of epoch {epoch} produced a "
                    f"non-finite meta-loss (meta_lr={schedule.meta_lr}, "
                    f"out_mul={getattr(optimizer, 'out_mul', '?')}). Lower the meta learning rate "
                    f"or out_mul. The best weights so far (epoch {result.best_epoch}) are in "
                    "this error's `result`.", result)
            completed = epoch
            if epoch % state_every == 0 or epoch == schedule.epochs:
                save(epoch)
    except KeyboardInterrupt as interrupt:
        record_time()
        optimizer.load_state_dict(result.best_state)
        if state_path is None:
            raise MetaTrainingInterrupted(result, None, completed) from interrupt
        raise MetaTrainingInterrupted(result, Path(state_path), saved_epoch) from interrupt
    finally:
        bar.close()
    record_time()
    if keep_last:
        result.last_state = copy.deepcopy(optimizer.state_dict())
    optimizer.load_state_dict(result.best_state)
    return result
