"""phys-l2o: learned optimizers with physical (port-Hamiltonian) priors, in PyTorch.

The names a user needs, in one place::

    from phys_l2o import HNN, PortHamiltonianField, QuadraticTask, meta_train, build, spec_of

Pieces live in ``phys_l2o.physics``, read-outs and flow maps in ``phys_l2o.integrators``;
every registered kind is listed by ``phys_l2o.registered(kind)``.
"""

from importlib.metadata import PackageNotFoundError, version

from . import integrators as _integrators  # noqa: F401  (registers read-outs and flows)
from . import optim
from .meta import (
    CheckpointError,
    MetaTrainingDiverged,
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
from .registry import KINDS, SpecError, build, load_toml, register, registered, spec_of, to_toml
from .reporting import method_table, plot_curves, summarize_methods
from .seeding import make_generator
from .tasks import MNISTTask, ModuleTask, QuadraticTask, Task

try:
    __version__ = version("phys-l2o")
except PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "HNN",
    "KINDS",
    "CheckpointError",
    "LSTMOptimizer",
    "LearnedOptimizer",
    "MNISTTask",
    "MetaTrainingDiverged",
    "ModuleTask",
    "Optimizer",
    "ParameterStateOptimizer",
    "PortHamiltonianField",
    "QuadraticTask",
    "Schedule",
    "SpecError",
    "Task",
    "TorchOptimizer",
    "TrainResult",
    "__version__",
    "build",
    "compare",
    "evaluate",
    "load_checkpoint",
    "load_toml",
    "make_generator",
    "meta_train",
    "method_table",
    "momentum_sgd",
    "optim",
    "paper_field",
    "plot_curves",
    "register",
    "registered",
    "rollout",
    "save_checkpoint",
    "spec_of",
    "summarize_methods",
    "to_toml",
]
