"""Potential ``V(q)``: the conservative force ``-dV/dq`` acting on the coordinate.

Every module here has ``gradient(q)`` returning ``dV/dq`` with the shape ``(..., d)`` of ``q``.
Modules that also know the scalar ``V`` (a true Hamiltonian) implement ``energy(q)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def mlp(width_in: int, hidden: int, width_out: int, bias: bool = True) -> nn.Sequential:
    """``Linear -> ReLU -> Linear``: the two-layer block the paper uses for ``G`` and ``dV/dq``."""
    return nn.Sequential(nn.Linear(width_in, hidden, bias=bias), nn.ReLU(),
                         nn.Linear(hidden, width_out, bias=bias))


class Potential(nn.Module):
    """Base class for potentials."""

    #: whether :meth:`energy` is available (``V`` itself, not only its gradient).
    has_energy: bool = False

    def gradient(self, q: Tensor) -> Tensor:
        """``dV/dq`` with the shape of ``q``: ``(..., d)``."""
        raise NotImplementedError

    def energy(self, q: Tensor) -> Tensor:
        """``V(q)`` with shape ``(...)``."""
        raise NotImplementedError(f"{type(self).__name__} has no scalar potential")

    def forward(self, q: Tensor) -> Tensor:
        return self.gradient(q)


class PotentialGradientMLP(Potential):
    """The paper's potential: an MLP ``d -> hidden -> d`` that outputs ``dV/dq`` directly.

    No scalar ``V`` exists, so the field is not guaranteed to be a gradient field.
    The paper uses ``hidden = d``.
    """

    def __init__(self, width: int, hidden: int | None = None) -> None:
        super().__init__()
        self.net = mlp(width, hidden or width, width)

    def gradient(self, q: Tensor) -> Tensor:
        return self.net(q)


class ScalarPotentialMLP(Potential):
    """A true potential: an MLP ``d -> hidden -> 1`` for ``V(q)``; ``dV/dq`` comes from autograd.

    Uses ``Softplus`` so that ``dV/dq`` is smooth. The gradient is built with
    ``create_graph=True`` so the optimizer stays differentiable for meta-training.
    """

    has_energy = True

    def __init__(self, width: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.Softplus(), nn.Linear(hidden, 1))

    def energy(self, q: Tensor) -> Tensor:
        return self.net(q).squeeze(-1)

    def gradient(self, q: Tensor) -> Tensor:
        with torch.enable_grad():
            q_in = q if q.requires_grad else q.detach().requires_grad_(True)
            energy = self.energy(q_in).sum()
            (grad,) = torch.autograd.grad(energy, q_in, create_graph=torch.is_grad_enabled()
                                          and any(p.requires_grad for p in self.parameters()))
        return grad


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
