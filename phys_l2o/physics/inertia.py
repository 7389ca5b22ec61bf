"""Inverse inertia ``M^{-1}``: how the momentum of the port-Hamiltonian system turns into velocity.

Every module here maps a tensor ``v`` of shape ``(..., d)`` to ``M^{-1} v`` of the same shape.
The paper learns ``M^{-1} = L L^T`` directly (it never needs ``M`` itself).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..checks import positive_number
from ..registry import register
from .linear import feature_matmul
from .scales import PositiveScale


class InverseInertia(nn.Module):
    """Base class: ``forward(v)`` returns ``M^{-1} v`` for ``v`` of shape ``(..., d)``."""

    def matrix(self) -> Tensor:
        """The ``(d, d)`` matrix ``M^{-1}``."""
        raise NotImplementedError

    def inertia(self, v: Tensor) -> Tensor:
        """``M v`` (the inverse of ``forward``), for energies ``1/2 q_dot^T M q_dot``."""
        return torch.linalg.solve(self.matrix(), v.unsqueeze(-1)).squeeze(-1)

    def forward(self, v: Tensor) -> Tensor:
        # M^{-1} is symmetric, so the row-vector product v @ M^{-1} equals (M^{-1} v)^T.
        return feature_matmul(v, self.matrix())


@register("inverse-inertia", "cholesky-inertia")
class CholeskyInverseInertia(InverseInertia):
    """The paper's learned inverse inertia ``M^{-1} = L L^T`` (positive semi-definite).

    ``L`` is the weight of a ``Linear(d, d)``; as in the reference code, the layer's bias is
    kept (and counted in the parameter count) but never used.

    Args:
        width: the feature width ``d`` of the coordinate.
        eps: added to the diagonal (``L L^T + eps I``) to make ``M^{-1}`` positive definite,
            so that ``M`` exists; ``0`` gives the paper's form.
    """

    def __init__(self, width: int, eps: float = 0.0) -> None:
        super().__init__()
        self.eps = positive_number("eps", eps, zero=True)
        self.width = width
        self.factor = nn.Linear(width, width)  # holds L; its forward is never called

    def matrix(self) -> Tensor:
        weight = self.factor.weight
        m_inv = weight @ weight.T
        if self.eps:
            m_inv = m_inv + self.eps * torch.eye(weight.shape[0], dtype=weight.dtype,
                                                 device=weight.device)
        return m_inv


@register("inverse-inertia", "constant-inertia")
class ConstantInverseInertia(InverseInertia):
    """A fixed, isotropic inverse inertia ``M^{-1} = c I`` (``c = 1``: identity inertia).

    Not learned. With ``c`` the learning rate it is the inertia of classical momentum.
    """

    def __init__(self, value: float = 1.0) -> None:
        super().__init__()
        self.value = positive_number("an inverse inertia", value)

    def forward(self, v: Tensor) -> Tensor:
        return self.value * v

    def inertia(self, v: Tensor) -> Tensor:
        return v / self.value


@register("inverse-inertia", "diagonal-inertia")
class DiagonalInverseInertia(InverseInertia):
    """A diagonal inverse inertia ``M^{-1} = diag(c)``, ``c > 0`` of shape ``(d,)``.

    Learned in log space by default (positive definite, so ``M`` always exists); with
    ``learn=False`` it is the fixed ``c I``, like ``ConstantInverseInertia``.

    Args:
        width: the feature width ``d``.
        value: the initial (or fixed) ``c``, ``> 0``; e.g. a learning rate.
        learn: learn ``log c``.
    """

    def __init__(self, width: int, value: float = 1.0, learn: bool = True) -> None:
        super().__init__()
        positive_number("an inverse inertia", value)
        self.width = width
        self.scale = PositiveScale(width, value, learn)

    def matrix(self) -> Tensor:
        return torch.diag(self.scale())

    def forward(self, v: Tensor) -> Tensor:
        return v * self.scale()

    def inertia(self, v: Tensor) -> Tensor:
        return v / self.scale()
