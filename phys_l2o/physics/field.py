"""The port-Hamiltonian vector field, composed from inertia, potential, dissipation and control.

In the coordinates ``(q, q_dot)`` with ``q_dot = dH/dp = M^{-1} p``, equation (2) of the paper
reads (``d`` features per coordinate, everything acts on the last axis):

    grad_H     = [dV/dq, q_dot]                       (..., 2d)
    [D_q, D_p] = D(grad_H)                            each (..., d)
    dq/dt      = q_dot - D_q
    dq_dot/dt  = M^{-1} (-dV/dq - D_p + G(q))

Any piece may be ``None`` (left out: no dissipation, no control, identity inertia) or
replaced by a user's ``nn.Module`` with the same call signature.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .potential import Potential


class PortHamiltonianField(nn.Module):
    """``forward(q, q_dot) -> (dq/dt, dq_dot/dt)``, each of shape ``(..., d)``.

    Args:
        potential: gives ``dV/dq`` (``potential.gradient(q)``, or ``potential(q)`` for a plain
            module).
        inverse_inertia: maps a force to an acceleration, ``v -> M^{-1} v``; ``None`` is ``M = I``.
        dissipation: maps ``[dV/dq, q_dot]`` (``(..., 2d)``) to ``[D_q, D_p]``; ``None`` is
            ``D = 0``.
        control: maps ``q`` to the external force ``G(q)``; ``None`` is ``G = 0``.
    """

    def __init__(self, potential: nn.Module, inverse_inertia: nn.Module | None = None,
                 dissipation: nn.Module | None = None, control: nn.Module | None = None) -> None:
        super().__init__()
        self.potential = potential
        self.inverse_inertia = inverse_inertia
        self.dissipation = dissipation
        self.control = control

    def potential_gradient(self, q: Tensor) -> Tensor:
        if isinstance(self.potential, Potential):
            return self.potential.gradient(q)
        return self.potential(q)

    def forward(self, q: Tensor, q_dot: Tensor) -> tuple[Tensor, Tensor]:
        dv_dq = self.potential_gradient(q)
        force = -dv_dq
        dq_dt = q_dot
        if self.dissipation is not None:
            d_q, d_p = self.dissipation(torch.cat([dv_dq, q_dot], dim=-1)).chunk(2, dim=-1)
            dq_dt = q_dot - d_q
            force = force - d_p
        if self.control is not None:
            force = force + self.control(q)
        dq_dot_dt = force if self.inverse_inertia is None else self.inverse_inertia(force)
        return dq_dt, dq_dot_dt

    def hamiltonian(self, q: Tensor, q_dot: Tensor) -> Tensor:
        """``H = 1/2 q_dot^T M q_dot + V(q)``, shape ``(...)``.

        Needs a potential with a scalar energy and an invertible inertia.
        """
        if not getattr(self.potential, "has_energy", False):
            raise ValueError(f"{type(self.potential).__name__} has no scalar potential V(q); use "
                             "ScalarPotentialMLP or QuadraticPotential for a true Hamiltonian")
        p = q_dot if self.inverse_inertia is None else self.inverse_inertia.inertia(q_dot)
        return 0.5 * (q_dot * p).sum(-1) + self.potential.energy(q)
