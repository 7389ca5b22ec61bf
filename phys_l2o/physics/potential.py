"""Potential ``V(q)``: the conservative force ``-dV/dq`` acting on the coordinate.

Every module here has ``gradient(q)`` returning ``dV/dq`` with the shape ``(..., d)`` of ``q``.
Modules that also know the scalar ``V`` (a true Hamiltonian) implement ``energy(q)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..checks import positive_int
from ..registry import register
from .linear import FeatureMLP, mlp


class Potential(nn.Module):
    """Base class for potentials."""

    #: whether ``energy`` is available (``V`` itself, not only its gradient).
    has_energy: bool = False
    #: whether ``torch.compile`` can run it (``LearnedOptimizer.compiled`` checks).
    compilable: bool = True

    def gradient(self, q: Tensor) -> Tensor:
        """``dV/dq`` with the shape of ``q``: ``(..., d)``."""
        raise NotImplementedError

    def energy(self, q: Tensor) -> Tensor:
        """``V(q)`` with shape ``(...)``."""
        raise NotImplementedError(f"{type(self).__name__} has no scalar potential")

    def forward(self, q: Tensor) -> Tensor:
        return self.gradient(q)


@register("potential", "potential-gradient-mlp")
class PotentialGradientMLP(FeatureMLP, Potential):
    """The paper's potential: an MLP ``d -> hidden -> d`` that outputs ``dV/dq`` directly.

    No scalar ``V`` exists, so the field is not guaranteed to be a gradient field.
    The paper uses ``hidden = d``.
    """

    def gradient(self, q: Tensor) -> Tensor:
        return self.net(q)


@register("potential", "scalar-potential-mlp")
class ScalarPotentialMLP(Potential):
    """A true potential: an MLP ``d -> hidden -> 1`` for ``V(q)``, and its exact gradient.

        V(q)  = w_2 . softplus(W_1 q + b_1) + b_2                      (...)
        dV/dq = W_1^T (w_2 * sigmoid(W_1 q + b_1))                      (..., d)

    ``Softplus`` makes ``dV/dq`` smooth. The gradient is written out (``softplus' =
    sigmoid``) rather than taken by autograd inside the step: it is then an ordinary
    differentiable function of ``q`` and the weights, which meta-gradients, ``torch.compile``
    and ``torch.func.vmap`` (stacked optimizers) all go through. It equals autograd's
    gradient of ``energy`` to float rounding (a test).
    """

    has_energy = True

    def __init__(self, width: int, hidden: int = 16) -> None:
        super().__init__()
        self.width = width
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.Softplus(), nn.Linear(hidden, 1))

    def energy(self, q: Tensor) -> Tensor:
        return self.net(q).squeeze(-1)

    def gradient(self, q: Tensor) -> Tensor:
        inner, outer = self.net[0], self.net[2]
        slope = torch.sigmoid(inner(q)) * outer.weight[0]            # (..., hidden)
        return slope @ inner.weight


@register("potential", "quadratic-potential")
class QuadraticPotential(Potential):
    """A fixed potential ``V(q) = k/2 |q|^2`` (``dV/dq = k q``). Not learned; useful in tests."""

    has_energy = True

    def __init__(self, stiffness: float = 1.0) -> None:
        super().__init__()
        self.stiffness = float(stiffness)

    def energy(self, q: Tensor) -> Tensor:
        return 0.5 * self.stiffness * (q * q).sum(-1)

    def gradient(self, q: Tensor) -> Tensor:
        return self.stiffness * q


@register("potential", "loss-potential")
class LossPotential(Potential):
    """The optimizee's loss as the potential: ``dV/dq`` is the loss gradient given at this step.

    For the *parameter-state* formulation (``q = theta``). The loss gradient is known only at
    ``theta_t`` (one gradient per optimizer step), so it is *held fixed* over the step: the
    field hands ``g = grad F(theta_t)`` to ``gradient`` as an argument
    (``field(q, q_dot, grad=g)``) and, for every ``q`` visited while stepping:

        dV/dq(q) = g + c(g)                          (..., d)

    i.e. ``V`` is the loss linearised at ``theta_t`` (``V(q) = F(theta_t) + g . (q - theta_t)``
    when there is no correction). ``c`` is an optional learned coordinatewise correction, an
    MLP ``1 -> hidden -> 1`` (ReLU between) that starts as the zero function; with it the force
    is a learned function of the gradient and no longer the gradient of the loss.

    Args:
        correction_hidden: hidden units of the learned correction ``c``; ``0`` for none (the
            plain loss gradient).
    """

    def __init__(self, correction_hidden: int = 0) -> None:
        super().__init__()
        positive_int("correction_hidden", correction_hidden, zero=True)
        self.width = 1 if correction_hidden else None  # the correction acts on d = 1
        self.correction: nn.Module | None = None
        if correction_hidden:
            self.correction = mlp(1, correction_hidden, 1)
            with torch.no_grad():  # start as the plain loss gradient
                self.correction[-1].weight.zero_()
                self.correction[-1].bias.zero_()

    @property
    def has_energy(self) -> bool:  # type: ignore[override]
        return self.correction is None

    def gradient(self, q: Tensor, grad: Tensor | None = None) -> Tensor:
        """``g + c(g)`` with the shape of ``q``, for the step's loss gradient ``grad = g``."""
        if grad is None:
            raise ValueError("LossPotential needs the step's loss gradient: the field passes "
                             "it as field(q, q_dot, grad)")
        grad = grad.expand_as(q)
        return grad if self.correction is None else grad + self.correction(grad)

    def energy(self, q: Tensor, grad: Tensor | None = None,
               anchor: Tensor | None = None) -> Tensor:
        """``V(q) - F(theta_t) = g . (q - theta_t)``, shape ``(...)``: needs the loss gradient
        ``grad = g`` and the ``anchor = theta_t`` (no correction only)."""
        if not self.has_energy or grad is None or anchor is None:
            raise NotImplementedError("LossPotential has a scalar potential only without a "
                                      "correction, given the loss gradient and the anchor")
        return (grad * (q - anchor)).sum(-1)
