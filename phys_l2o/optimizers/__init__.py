"""Optimizers: the contract (``Optimizer``), the learned ones (HNN, LSTM, parameter-state HNN,
the per-coordinate MLP control), the ``torch.optim`` baselines, and the gradient preprocessing
and adaptive features they share.

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
from .features import AdaptiveFeatures, output_normalize, segment_rms
from .hnn import HNN, HNNState, paper_field
from .lstm import LSTMOptimizer, LSTMState
from .mlp import MLPOptimizer, MLPState
from .parameter_state import (
    ParameterState,
    ParameterStateOptimizer,
    momentum_sgd,
    parameter_field,
)
from .preprocessing import GradientPreprocessing, NoPreprocessing
from .stacked import Stacked, StackedState

__all__ = [
    "HNN",
    "AdamBaseline",
    "AdaptiveFeatures",
    "BaselineState",
    "CompiledOptimizer",
    "GradientPreprocessing",
    "HNNState",
    "LSTMOptimizer",
    "LSTMState",
    "LearnedOptimizer",
    "MLPOptimizer",
    "MLPState",
    "NAGBaseline",
    "NoPreprocessing",
    "Optimizer",
    "ParameterState",
    "ParameterStateOptimizer",
    "RMSpropBaseline",
    "SGDBaseline",
    "Stacked",
    "StackedState",
    "Segments",
    "TorchOptimizer",
    "advance",
    "apply_update",
    "compile_available",
    "detach_state",
    "momentum_sgd",
    "output_normalize",
    "paper_field",
    "parameter_field",
    "segment_normalize",
    "segment_rms",
]
