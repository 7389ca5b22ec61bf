"""phys-l2o: learned optimizers with physical (port-Hamiltonian) priors, in PyTorch.

The names a user needs, in one place::

    from phys_l2o import HNN, PortHamiltonianField, QuadraticTask, meta_train, build, spec_of

Pieces live in ``phys_l2o.physics``, read-outs and flow maps in ``phys_l2o.integrators``;
every registered kind is listed by ``phys_l2o.registered(kind)``. The names are loaded when
first used, so that ``import phys_l2o`` (and ``phys-l2o --help``) does not load torch.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("phys-l2o")
except PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0.0.0+unknown"

#: every public name and the module that defines it.
_EXPORTS = {
    **dict.fromkeys(["CheckpointError", "MetaTrainingDiverged", "MetaTrainingInterrupted",
                     "Schedule", "TrainResult", "compare", "evaluate", "load_checkpoint",
                     "meta_train", "rollout", "save_checkpoint"], "meta"),
    **dict.fromkeys(["HNN", "LSTMOptimizer", "LearnedOptimizer", "Optimizer",
                     "ParameterStateOptimizer", "TorchOptimizer", "momentum_sgd",
                     "paper_field"], "optimizers"),
    "PortHamiltonianField": "physics",
    **dict.fromkeys(["KINDS", "SpecError", "build", "register", "registered", "spec_of"],
                    "registry"),
    **dict.fromkeys(["load_toml", "to_toml"], "config"),
    **dict.fromkeys(["method_entries", "method_table", "plot_curves", "summarize_methods"],
                    "reporting"),
    **dict.fromkeys(["Sweep", "SweepError", "load_sweep"], "experiments.spec"),
    "run_sweep": "experiments.runner",
    "make_generator": "seeding",
    **dict.fromkeys(["MNISTTask", "ModuleTask", "QuadraticTask", "Task"], "tasks"),
}

__all__ = [
    "HNN",
    "KINDS",
    "CheckpointError",
    "LSTMOptimizer",
    "LearnedOptimizer",
    "MNISTTask",
    "MetaTrainingDiverged",
    "MetaTrainingInterrupted",
    "ModuleTask",
    "Optimizer",
    "ParameterStateOptimizer",
    "PortHamiltonianField",
    "QuadraticTask",
    "Schedule",
    "SpecError",
    "Sweep",
    "SweepError",
    "Task",
    "TorchOptimizer",
    "TrainResult",
    "__version__",
    "build",
    "compare",
    "evaluate",
    "load_checkpoint",
    "load_sweep",
    "load_toml",
    "make_generator",
    "meta_train",
    "method_entries",
    "method_table",
    "momentum_sgd",
    "optim",
    "paper_field",
    "plot_curves",
    "register",
    "registered",
    "rollout",
    "run_sweep",
    "save_checkpoint",
    "spec_of",
    "summarize_methods",
    "to_toml",
]


def __getattr__(name: str) -> Any:
    if name == "optim":
        return importlib.import_module(".optim", __name__)
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'phys_l2o' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and editors: the names as plain imports
    from . import optim
    from .config import load_toml, to_toml
    from .experiments.runner import run_sweep
    from .experiments.spec import Sweep, SweepError, load_sweep
    from .meta import (
        CheckpointError,
        MetaTrainingDiverged,
        MetaTrainingInterrupted,
        Schedule,
        TrainResult,
        compare,
        evaluate,
        load_checkpoint,
        meta_train,
        rollout,
        save_checkpoint,
    )
    from .optimizers import (
        HNN,
        LearnedOptimizer,
        LSTMOptimizer,
        Optimizer,
        ParameterStateOptimizer,
        TorchOptimizer,
        momentum_sgd,
        paper_field,
    )
    from .physics import PortHamiltonianField
    from .registry import KINDS, SpecError, build, register, registered, spec_of
    from .reporting import method_entries, method_table, plot_curves, summarize_methods
    from .seeding import make_generator
    from .tasks import MNISTTask, ModuleTask, QuadraticTask, Task
