"""Hand-designed baselines: PyTorch's own ``torch.optim`` classes behind the optimizer contract.

The batch of problems is one leaf tensor ``(batch, coords)``; these optimizers act
elementwise, so one ``torch.optim`` instance on it is exactly one optimizer per problem.
"SGD" is SGD with momentum 0.9 and "NAG" SGD with Nesterov momentum 0.9, as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .base import State

BASELINES: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "adam": (torch.optim.Adam, {}),
    "rmsprop": (torch.optim.RMSprop, {}),
    "sgd": (torch.optim.SGD, {"momentum": 0.9}),
    "nag": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
}


class TorchOptimizer:
    """A ``torch.optim`` baseline with the contract of ``LearnedOptimizer`` (no weights).

    Args:
        name: one of ``BASELINES`` (``adam``, ``rmsprop``, ``sgd``, ``nag``).
        lr: learning rate.
        **kwargs: further ``torch.optim`` arguments (override the defaults of ``name``).
    """

    def __init__(self, name: str, lr: float, **kwargs: Any) -> None:
        if name not in BASELINES:
            raise ValueError(f"unknown baseline {name!r}; choose from {sorted(BASELINES)}")
        if not lr > 0:
            raise ValueError(f"the learning rate must be positive, got {lr}")
        self.name = name
        self.lr = lr
        cls, defaults = BASELINES[name]
        self._cls = cls
        self._kwargs = {**defaults, **kwargs}

    def num_params(self) -> None:
        return None

    def init_state(self, params: Tensor, segments: Sequence[int]) -> State:
        leaf = params.detach().clone().requires_grad_(True)
        return {"leaf": leaf, "optim": self._cls([leaf], lr=self.lr, **self._kwargs)}

    @torch.no_grad()
    def step(self, params: Tensor, grad: Tensor, state: State) -> tuple[Tensor, State]:
        leaf = state["leaf"]
        leaf.copy_(params)
        leaf.grad = grad.detach()
        state["optim"].step()
        return leaf.detach().clone(), state

    def __repr__(self) -> str:
        return f"TorchOptimizer({self.name!r}, lr={self.lr})"
