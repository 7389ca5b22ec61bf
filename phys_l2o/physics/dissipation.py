"""Dissipation ``D``: friction that drains energy from the port-Hamiltonian system.

Every module maps the Hamiltonian gradient ``[dH/dq, dH/dp]`` of shape ``(..., 2d)`` to
``D [dH/dq, dH/dp]`` of the same shape. With ``D`` positive semi-definite the energy
cannot grow (without control).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LinearDissipation(nn.Module):
    """The paper's dissipation: an unconstrained bias-free ``Linear(2d, 2d)``.

    Nothing forces it to be positive semi-definite, so it may also inject energy.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * width, 2 * width, bias=False)

    def forward(self, grad_h: Tensor) -> Tensor:
        return self.linear(grad_h)


class PSDDissipation(nn.Module):
    """A positive semi-definite dissipation ``D = R R^T`` with a learned ``(2d, 2d)`` factor ``R``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.factor = nn.Linear(2 * width, 2 * width, bias=False)

    def matrix(self):
        weight = self.factor.weight
        return weight @ weight.T

    def forward(self, grad_h: Tensor) -> Tensor:
        return grad_h @ self.matrix()


class MomentumDissipation(nn.Module):
    """A fixed friction ``gamma`` on the momentum only: ``D = diag(0, gamma I)``. Not learned."""

    def __init__(self, gamma: float) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"a friction coefficient must be >= 0, got {gamma}")
        self.gamma = float(gamma)

    def forward(self, grad_h: Tensor) -> Tensor:
        d = grad_h.shape[-1] // 2
        return torch.cat([torch.zeros_like(grad_h[..., :d]), self.gamma * grad_h[..., d:]], dim=-1)
