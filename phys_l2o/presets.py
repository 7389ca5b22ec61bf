"""The paper's settings in one place: learned-optimizer configs, schedules, baseline learning
rates and the published numbers (Tables A1-A3).
"""

from __future__ import annotations

#: per task and learned optimizer: constructor config, truncation length and meta learning rate.
PAPER_LEARNED: dict[str, dict[str, dict]] = {
    "quadratic": {
        "hnn": {"config": {"preprocessing": False, "out_mul": 0.001, "normalize": True},
                "unroll": 15, "meta_lr": 0.01},
        "lstm": {"config": {"preprocessing": False, "out_mul": 1.0},
                 "unroll": 20, "meta_lr": 0.003},
    },
    "mnist": {
        "hnn": {"config": {"preprocessing": True, "out_mul": 0.001, "normalize": False},
                "unroll": 15, "meta_lr": 0.01},
        # the reference meta-trains with out_mul 0.1 but evaluates with 1.0; we use 0.1 for both
        "lstm": {"config": {"preprocessing": True, "out_mul": 0.1},
                 "unroll": 20, "meta_lr": 0.01},
    },
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

#: learning rates of the hand-designed baselines, per evaluation target.
BASELINE_LR: dict[str, dict[str, float]] = {
    "quadratic": {"adam": 0.1, "rmsprop": 0.03, "sgd": 0.01, "nag": 0.01},
    "mnist-sigmoid": {"adam": 0.03, "rmsprop": 0.01, "sgd": 1.0, "nag": 1.0},
    "mnist-relu": {"adam": 0.03, "rmsprop": 0.003, "sgd": 0.3, "nag": 0.3},
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
