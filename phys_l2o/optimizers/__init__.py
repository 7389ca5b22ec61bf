"""Optimizers: the contract (``Optimizer``), the learned ones (HNN, LSTM, parameter-state HNN),
the ``torch.optim`` baselines, and the gradient preprocessing they share.

Learned optimizers are registered as the ``optimizer`` kind, baselines as ``baseline``,
preprocessings as ``preprocessing`` (``phys_l2o.registry``).
"""

from __future__ import annotations

from .base import (
    CompiledOptimizer,
    LearnedOptimizer,
    Optimizer,
    Segments,
    advance,
    apply_update,
    compile_available,
    detach_state,
    segment_normalize,
)
from .baselines import (
    AdamBaseline,
    BaselineState,
    NAGBaseline,
    RMSpropBaseline,
    SGDBaseline,
    TorchOptimizer,
)
from .hnn import HNN, HNNState, paper_field
from .lstm import LSTMOptimizer, LSTMState
from .parameter_state import (
    ParameterState,
    ParameterStateOptimizer,
    momentum_sgd,
    parameter_field,
)
from .preprocessing import GradientPreprocessing, NoPreprocessing

__all__ = [
    "HNN",
    "AdamBaseline",
    "BaselineState",
    "CompiledOptimizer",
    "GradientPreprocessing",
    "HNNState",
    "LSTMOptimizer",
    "LSTMState",
    "LearnedOptimizer",
    "NAGBaseline",
    "NoPreprocessing",
    "Optimizer",
    "ParameterState",
    "ParameterStateOptimizer",
    "RMSpropBaseline",
    "SGDBaseline",
    "Segments",
    "TorchOptimizer",
    "advance",
    "apply_update",
    "compile_available",
    "detach_state",
    "momentum_sgd",
    "paper_field",
    "parameter_field",
    "segment_normalize",
]
