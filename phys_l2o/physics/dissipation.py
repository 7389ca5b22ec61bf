"""Dissipation ``D``: friction that drains energy from the port-Hamiltonian system.

Every module derives from ``Dissipation`` and maps the Hamiltonian gradient
``[dH/dq, dH/dp] = [dV/dq, q_dot]`` of shape ``(..., 2d)`` to ``[D_q, D_p]`` of the same shape.
With ``D`` positive semi-definite the energy cannot grow (without control).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..checks import positive_number
from ..registry import register
from .linear import FeatureLinear, feature_matmul
from .scales import PositiveScale


class Dissipation(nn.Module):
    """Base class: ``forward(grad_h)`` maps ``[dV/dq, q_dot]`` ``(..., 2d)`` to ``[D_q, D_p]``
    ``(..., 2d)``.

    ``D_q`` is subtracted from the velocity ``dq/dt`` and ``D_p`` from the force; a subclass
    implements ``forward`` (a linear ``D`` may also offer ``matrix()``, the ``(2d, 2d)`` ``D``).

    Example:
        >>> import torch
        >>> class Drag(Dissipation):
        ...     def forward(self, grad_h):
        ...         return 0.1 * grad_h
        >>> Drag()(torch.ones(3, 2)).shape
        torch.Size([3, 2])
    """

    #: the feature width ``d`` it was built for; ``None``: it works for any width.
    width: int | None = None
    #: whether ``torch.compile`` can run it (``LearnedOptimizer.compiled`` checks).
    compilable: bool = True

    def forward(self, grad_h: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")


@register("dissipation", "linear-dissipation")
class LinearDissipation(Dissipation):
    """The paper's dissipation: an unconstrained bias-free ``Linear(2d, 2d)``.

    Nothing forces it to be positive semi-definite, so it may also inject energy.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.linear = FeatureLinear(2 * width, 2 * width, bias=False)

    def forward(self, grad_h: Tensor) -> Tensor:
        return self.linear(grad_h)


@register("dissipation", "psd-dissipation")
class PSDDissipation(Dissipation):
    """A positive semi-definite dissipation ``D = R R^T``, ``R`` a learned ``(2d, 2d)`` factor."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.factor = nn.Linear(2 * width, 2 * width, bias=False)  # holds R, never called

    def matrix(self) -> Tensor:
        """The ``(2d, 2d)`` matrix ``D``."""
        weight = self.factor.weight
        return weight @ weight.T

    def forward(self, grad_h: Tensor) -> Tensor:
        return feature_matmul(grad_h, self.matrix())  # D is symmetric


@register("dissipation", "momentum-dissipation")
class MomentumDissipation(Dissipation):
    """A fixed friction ``gamma`` on the momentum only: ``D = diag(0, gamma I)``. Not learned."""

    def __init__(self, gamma: float) -> None:
        super().__init__()
        self.gamma = positive_number("the friction gamma", gamma, zero=True)

    def forward(self, grad_h: Tensor) -> Tensor:
        d = grad_h.shape[-1] // 2
        return torch.cat([torch.zeros_like(grad_h[..., :d]), self.gamma * grad_h[..., d:]], dim=-1)


@register("dissipation", "diagonal-dissipation")
class DiagonalDissipation(Dissipation):
    """A diagonal, hence positive semi-definite, dissipation ``D = diag(a_q I_d, a_p I_d)``.

    ``D_q = a_q dV/dq`` drains energy through the coordinate (a direct gradient-descent term)
    and ``D_p = a_p q_dot`` is a friction on the momentum. A positive entry is learned in log
    space (``learn=True``); a zero entry stays zero.

    Args:
        width: the feature width ``d``.
        q: the initial (or fixed) ``a_q >= 0``.
        p: the initial (or fixed) ``a_p >= 0``.
        learn: learn ``log a_q`` and ``log a_p`` (their positive entries).
    """

    def __init__(self, width: int, q: float = 0.0, p: float = 0.0, learn: bool = True) -> None:
        super().__init__()
        self.width = width
        self.q_scale = PositiveScale(width, q, learn)
        self.p_scale = PositiveScale(width, p, learn)

    def diagonal(self) -> Tensor:
        """``[a_q, a_p]`` of shape ``(2d,)``."""
        return torch.cat([self.q_scale(), self.p_scale()])

    def matrix(self) -> Tensor:
        """The ``(2d, 2d)`` matrix ``D``."""
        return torch.diag(self.diagonal())

    def forward(self, grad_h: Tensor) -> Tensor:
        return grad_h * self.diagonal()
