"""The paper's settings, read from its sweep files (``phys_l2o/sweeps/paper-*.toml``): the
learned optimizers with their meta-training settings, the tasks, the schedules, the baselines
with their learning rates, and the published numbers (Tables A1-A3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .registry import Spec, load_toml, lookup

#: the paper's experiments, as sweep files of the package (``phys-l2o reproduce TASK`` runs
#: ``sweeps/paper-TASK.toml``); everything below is read from them.
PAPER_SWEEP_FILES: dict[str, Path] = {
    task: Path(__file__).resolve().parent / "sweeps" / f"paper-{task}.toml"
    for task in ("quadratic", "mnist")}
_PAPER = {task: load_toml(path) for task, path in PAPER_SWEEP_FILES.items()}


def target_key(task: str, label: str) -> str:
    """The key of the paper sweep ``task``'s target ``label`` in ``PAPER_BASELINES`` and
    ``PAPER_RESULTS``: the task's name for its only target, else ``task-label``."""
    return task if len(_PAPER[task]["targets"]) == 1 else f"{task}-{label}"


#: per task and learned optimizer: its spec, truncation length and meta learning rate.
PAPER_LEARNED: dict[str, dict[str, dict[str, Any]]] = {
    task: {v["name"]: {"optimizer": v["optimizer"], "unroll": v["unroll"],
                       "meta_lr": v["meta_lr"]} for v in sweep["variants"]}
    for task, sweep in _PAPER.items()}

#: the task each experiment meta-trains on, and its evaluation targets (by key).
PAPER_TASKS: dict[str, dict[str, Any]] = {
    task: {"train": sweep["train"],
           "targets": {target_key(task, label): t["task"] for label, t in sweep["targets"].items()}}
    for task, sweep in _PAPER.items()}

#: schedule sizes per task and budget (everything else comes from PAPER_LEARNED).
BUDGETS: dict[str, dict[str, dict]] = {
    task: {name: {k: sizes[k] for k in ("epochs", "trajectories", "meta_batch",
                                        "validation_problems")}
           for name, sizes in sweep["budgets"].items()}
    for task, sweep in _PAPER.items()}

#: optimizee steps per problem, for every task and budget.
STEPS = 100

#: test problems per method and evaluation target.
TEST_PROBLEMS: dict[str, dict[str, int]] = {
    task: {name: sizes["test_problems"] for name, sizes in sweep["budgets"].items()}
    for task, sweep in _PAPER.items()}

#: the hand-designed baselines with the paper's learning rates, per evaluation target.
PAPER_BASELINES: dict[str, dict[str, Spec]] = {
    target_key(task, label): t["baselines"]
    for task, sweep in _PAPER.items() for label, t in sweep["targets"].items()}

#: the paper's reported mean final losses (its "best loss"), per evaluation target.
PAPER_RESULTS: dict[str, dict[str, float]] = {
    target_key(task, label): t["paper"]
    for task, sweep in _PAPER.items() for label, t in sweep["targets"].items()}

#: the paper's field as a spec (``paper_field`` builds the same modules); its width comes from
#: the optimizer that builds it. Replace or drop (``False``) a piece to make a variant.
PAPER_FIELD: Spec = {"type": "port-hamiltonian", "potential": "potential-gradient-mlp",
                     "inverse_inertia": "cholesky-inertia", "dissipation": "linear-dissipation",
                     "control": "control-mlp"}

#: the order methods appear in tables and plots.
METHOD_ORDER = ("hnn", "lstm", "adam", "rmsprop", "sgd", "nag")

#: the meta-training settings of a learned optimizer the paper did not train.
DEFAULT_META = {"unroll": 15, "meta_lr": 0.01}


def budget_sizes(task: str, budget: str) -> dict[str, int]:
    """The schedule sizes of ``budget`` for the task named ``task`` (another registered
    task takes the quadratic's)."""
    sizes = BUDGETS.get(task, BUDGETS["quadratic"])
    if budget not in sizes:
        raise ValueError(f"unknown budget {budget!r}; choose from {sorted(sizes)}")
    return dict(sizes[budget])


def learned_preset(task: str, optimizer: str) -> dict[str, Any]:
    """The spec, ``unroll`` and ``meta_lr`` of the learned optimizer ``optimizer`` (a registered
    name) on ``task``: the paper's where it has one, else its defaults and ``DEFAULT_META``."""
    lookup(optimizer, "optimizer")  # a clear error for an unknown name
    paper = PAPER_LEARNED.get(task, PAPER_LEARNED["quadratic"]).get(optimizer)
    if paper is not None:
        return {**paper, "optimizer": dict(paper["optimizer"])}
    return {"optimizer": {"type": optimizer}, **DEFAULT_META}

