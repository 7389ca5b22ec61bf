"""The paper's settings in one place, as specs of registered types: the learned optimizers
with their meta-training settings, the tasks, the schedules, the baselines with their
learning rates, and the published numbers (Tables A1-A3).
"""

from __future__ import annotations

from typing import Any

from .registry import Spec, lookup

#: per task and learned optimizer: its spec, truncation length and meta learning rate. On MNIST
#: the reference meta-trains the LSTM with out_mul 0.1 but evaluates with 1.0; we use 0.1 for both.
PAPER_LEARNED: dict[str, dict[str, dict[str, Any]]] = {
    task: {
        "hnn": {"optimizer": {"type": "hnn", "preprocessing": pre, "out_mul": 0.001,
                              "normalize": not pre}, "unroll": 15, "meta_lr": 0.01},
        "lstm": {"optimizer": {"type": "lstm", "preprocessing": pre, "out_mul": lstm_out_mul},
                 "unroll": 20, "meta_lr": lstm_meta_lr},
    }
    for task, pre, lstm_out_mul, lstm_meta_lr in [("quadratic", False, 1.0, 0.003),
                                                  ("mnist", True, 0.1, 0.01)]
}

#: the paper's field as a spec (``paper_field`` builds the same modules); its width comes from
#: the optimizer that builds it. Replace or drop (``False``) a piece to make a variant.
PAPER_FIELD: Spec = {"type": "port-hamiltonian", "potential": "potential-gradient-mlp",
                     "inverse_inertia": "cholesky-inertia", "dissipation": "linear-dissipation",
                     "control": "control-mlp"}

#: the task each experiment meta-trains on, and its evaluation targets (by key).
PAPER_TASKS: dict[str, dict[str, Any]] = {
    "quadratic": {"train": {"type": "quadratic"},
                  "targets": {"quadratic": {"type": "quadratic"}}},
    "mnist": {"train": {"type": "mnist", "activation": "sigmoid", "pool": "train"},
              "targets": {"mnist-sigmoid": {"type": "mnist", "activation": "sigmoid",
                                            "pool": "test"},
                          "mnist-relu": {"type": "mnist", "activation": "relu",
                                         "pool": "test"}}},
}

#: schedule sizes per task and budget (everything else comes from PAPER_LEARNED).
BUDGETS: dict[str, dict[str, dict]] = {
    "quadratic": {
        "paper": {"epochs": 100, "trajectories": 20, "meta_batch": 1, "validation_problems": 50},
        "smoke": {"epochs": 2, "trajectories": 5, "meta_batch": 1, "validation_problems": 10},
    },
    "mnist": {
        "paper": {"epochs": 50, "trajectories": 20, "meta_batch": 1, "validation_problems": 20},
        "smoke": {"epochs": 1, "trajectories": 2, "meta_batch": 1, "validation_problems": 4},
    },
}

#: optimizee steps per problem, for every task and budget.
STEPS = 100

#: test problems per method and evaluation target (the smoke MNIST run keeps CI short).
TEST_PROBLEMS: dict[str, dict[str, int]] = {
    "quadratic": {"paper": 100, "smoke": 100},
    "mnist": {"paper": 100, "smoke": 10},
}

#: the hand-designed baselines with the paper's learning rates, per evaluation target.
PAPER_BASELINES: dict[str, dict[str, Spec]] = {
    target: {name: {"type": name, "lr": lr} for name, lr in rates.items()}
    for target, rates in {
        "quadratic": {"adam": 0.1, "rmsprop": 0.03, "sgd": 0.01, "nag": 0.01},
        "mnist-sigmoid": {"adam": 0.03, "rmsprop": 0.01, "sgd": 1.0, "nag": 1.0},
        "mnist-relu": {"adam": 0.03, "rmsprop": 0.003, "sgd": 0.3, "nag": 0.3},
    }.items()
}

#: the paper's reported mean final losses (its "best loss"), per evaluation target.
PAPER_RESULTS: dict[str, dict[str, float]] = {
    "quadratic": {"adam": 0.41, "rmsprop": 0.76, "sgd": 0.33, "nag": 0.45, "lstm": 0.25,
                  "hnn": 0.23},
    "mnist-sigmoid": {"adam": 0.35, "rmsprop": 0.38, "sgd": 0.36, "nag": 0.33, "lstm": 0.29,
                      "hnn": 0.38},
    "mnist-relu": {"adam": 0.34, "rmsprop": 0.38, "sgd": 0.45, "nag": 0.61, "lstm": 2.31,
                   "hnn": 0.36},
}

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

