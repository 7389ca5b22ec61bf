"""Learned optimizers (HNN, LSTM), the hand-designed baselines, and the registry that builds them."""

from __future__ import annotations

from typing import Any

from .base import LearnedOptimizer, State, detach_state, segment_normalize
from .baselines import BASELINES, TorchOptimizer
from .hnn import HNN, paper_field
from .lstm import LSTMOptimizer
from .preprocessing import GradientPreprocessing, NoPreprocessing

LEARNED_OPTIMIZERS: dict[str, type[LearnedOptimizer]] = {"hnn": HNN, "lstm": LSTMOptimizer}


def build_optimizer(name: str, **config: Any) -> LearnedOptimizer:
    """Build a registered learned optimizer from its :meth:`~LearnedOptimizer.config`."""
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
    "State",
    "TorchOptimizer",
    "build_optimizer",
    "detach_state",
    "paper_field",
    "segment_normalize",
]
