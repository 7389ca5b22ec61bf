"""Learned optimizers (HNN, LSTM, parameter-state HNN), baselines, and the registry of them."""

from __future__ import annotations

from typing import Any

from .base import LearnedOptimizer, State, detach_state, segment_normalize
from .baselines import BASELINES, TorchOptimizer
from .hnn import HNN, paper_field
from .lstm import LSTMOptimizer
from .parameter_state import ParameterStateOptimizer, momentum_sgd, parameter_field
from .preprocessing import GradientPreprocessing, NoPreprocessing

LEARNED_OPTIMIZERS: dict[str, type[LearnedOptimizer]] = {
    "hnn": HNN, "lstm": LSTMOptimizer, "hnn-param": ParameterStateOptimizer}


def build_optimizer(name: str, **config: Any) -> LearnedOptimizer:
    """Build a registered learned optimizer from its ``LearnedOptimizer.config``."""
    if name not in LEARNED_OPTIMIZERS:
        raise ValueError(f"unknown learned optimizer {name!r}; "
                         f"choose from {sorted(LEARNED_OPTIMIZERS)}")
    return LEARNED_OPTIMIZERS[name](**config)


__all__ = [
    "BASELINES",
    "HNN",
    "LEARNED_OPTIMIZERS",
    "GradientPreprocessing",
    "LSTMOptimizer",
    "LearnedOptimizer",
    "NoPreprocessing",
    "ParameterStateOptimizer",
    "State",
    "TorchOptimizer",
    "build_optimizer",
    "detach_state",
    "momentum_sgd",
    "paper_field",
    "parameter_field",
    "segment_normalize",
]
