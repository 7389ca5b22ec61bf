"""The paper's experiments: its sweep files (``phys_l2o/sweeps/paper-*.toml``), parsed once as
``Sweep`` objects, and the presets read from them.

Everything here is a view of ``paper_sweep(task)``: the learned optimizers with their
meta-training settings (``learned_preset``), the budgets (``budget_sizes``,
``paper_schedule``), the evaluation targets with the baselines' learning rates and the
published numbers of Tables A1-A3 (``paper_targets``); plus how the paper names and orders its
methods in tables (``DISPLAY_NAMES``).
"""

from __future__ import annotations

import functools
from typing import Any

from ..optimizers.base import LearnedOptimizer
from ..registry import Spec, as_spec, lookup
from .compose import PACKAGE_DIR
from .plan import DEFAULT_META, schedule_for
from .spec import TUNED, Sweep, SweepError, Target, load_sweep
from .training import build_seeded

#: the paper's experiments: ``phys-l2o reproduce TASK`` runs ``sweeps/paper-TASK.toml``.
PAPER_TASKS: tuple[str, ...] = tuple(sorted(
    p.stem.removeprefix("paper-") for p in PACKAGE_DIR.glob("paper-*.toml")))
#: a task the paper did not train on takes the presets of this one.
FALLBACK_TASK = "quadratic"
#: the hand-designed baselines of the paper's tables.
PAPER_BASELINE_NAMES = ("adam", "rmsprop", "sgd", "nag")
#: how the paper writes its methods' names in tables and plots.
DISPLAY_NAMES = {"hnn": "HNN", "lstm": "LSTM", "adam": "Adam", "rmsprop": "RMSprop",
                 "sgd": "SGD", "nag": "NAG"}
DISPLAY_NAMES.update({TUNED.format(b): f"{DISPLAY_NAMES[b]} (tuned)"
                      for b in PAPER_BASELINE_NAMES})


@functools.cache
def paper_sweep(task: str) -> Sweep:
    """The paper's experiment on ``task`` (``quadratic`` or ``mnist``), parsed and checked.

    Raises:
        SweepError: the paper has no experiment on ``task``.
    """
    if task not in PAPER_TASKS:
        raise SweepError(f"no paper sweep for {task!r}; choose from {list(PAPER_TASKS)}")
    return load_sweep(PACKAGE_DIR / f"paper-{task}.toml")


def _paper_task(task: str) -> str:
    return task if task in PAPER_TASKS else FALLBACK_TASK


def target_key(task: str, label: str) -> str:
    """The key of the paper sweep ``task``'s target ``label`` (in ``paper_targets`` and the
    pretrained weights' manifest): the task's name for its only target, else ``task-label``."""
    return task if len(paper_sweep(task).targets) == 1 else f"{task}-{label}"


def paper_targets() -> dict[str, Target]:
    """Every evaluation target of the paper, by ``target_key``: its task, its baselines with
    the paper's learning rates, and the paper's reported mean final losses (``paper``)."""
    return {target_key(task, t.label): t for task in PAPER_TASKS
            for t in paper_sweep(task).targets}


def paper_baselines(task: Spec | str) -> dict[str, Spec]:
    """The baselines at the paper's learning rates for the task ``task``: those of the paper's
    target whose task agrees with it on every option both give (MNIST: the activation), else
    of the first target of the task's paper sweep (a task the paper did not use: the
    quadratic's)."""
    spec = as_spec(task)
    targets = paper_sweep(_paper_task(spec["type"])).targets
    for target in targets:
        shared = set(target.task) & set(spec)
        if all(target.task[k] == spec[k] for k in shared):
            return dict(target.baselines)
    return dict(targets[0].baselines)


def paper_learned(task: str) -> dict[str, dict[str, Any]]:
    """Per learned optimizer of the paper's ``task``: its ``optimizer`` spec, its ``unroll``
    and ``meta_lr``."""
    return {v.name: {"optimizer": dict(v.optimizer), **DEFAULT_META,
                     **{k: v.settings[k] for k in DEFAULT_META if k in v.settings}}
            for v in paper_sweep(task).variants}


def learned_preset(task: str, optimizer: str) -> dict[str, Any]:
    """The spec, ``unroll`` and ``meta_lr`` of the learned optimizer ``optimizer`` (a registered
    name) on ``task``: the paper's where it has one, else its defaults and ``DEFAULT_META``."""
    lookup(optimizer, "optimizer")  # a clear error for an unknown name
    paper = paper_learned(_paper_task(task)).get(optimizer)
    return paper if paper is not None else {"optimizer": {"type": optimizer}, **DEFAULT_META}


def budget_names() -> list[str]:
    """Every budget of the paper's sweeps."""
    return sorted({b for task in PAPER_TASKS for b in paper_sweep(task).budgets})


def budget_sizes(task: str, budget: str) -> dict[str, int]:
    """The sizes of ``budget`` of the paper's sweep for ``task`` (another registered task
    takes the quadratic's).

    Raises:
        SweepError: the sweep has no such budget.
    """
    return paper_sweep(_paper_task(task)).budget(budget)[1]


def paper_schedule(task: str, optimizer: str | Spec, budget: str, **overrides: Any):
    """The schedule of ``optimizer`` (a registered name or a spec) on ``task`` for ``budget``
    (``paper`` or ``smoke``): the budget's sizes, the optimizer's truncation and meta
    learning rate (the paper's, or the defaults for an optimizer the paper did not train),
    then ``overrides`` that are not ``None``."""
    name = optimizer if isinstance(optimizer, str) else optimizer["type"]
    preset = learned_preset(task, name)
    return schedule_for(budget_sizes(task, budget),
                        {"unroll": preset["unroll"], "meta_lr": preset["meta_lr"]}, **overrides)


def paper_optimizer(task: str, name: str, seed: int, **overrides: Any) -> LearnedOptimizer:
    """A freshly initialized learned optimizer with the paper's spec for ``task`` (or the
    defaults of a registered optimizer the paper did not train), options ``overrides``."""
    spec = {**learned_preset(task, name)["optimizer"],
            **{k: v for k, v in overrides.items() if v is not None}}
    return build_seeded(spec, seed, f"init-{name}")
