"""The port-Hamiltonian vector field, composed from inertia, potential, dissipation and control.

In the coordinates ``(q, q_dot)`` with ``q_dot = dH/dp = M^{-1} p``, equation (2) of the paper
reads (``d`` features per coordinate, everything acts on the last axis):

    grad_H     = [dV/dq, q_dot]                       (..., 2d)
    [D_q, D_p] = D(grad_H)                            each (..., d)
    dq/dt      = q_dot - D_q
    dq_dot/dt  = M^{-1} (-dV/dq - D_p + G(q))

A potential that depends on the optimizee's loss gradient of the current step (the
parameter-state optimizer's ``LossPotential``) receives it as the argument ``grad`` of
``field(q, q_dot, grad)``: per-step inputs travel as arguments, never as state bound into a
module.

Any piece may be ``None`` (left out: no dissipation, no control, identity inertia),
replaced by a user's ``nn.Module`` with the same call signature, or given as a spec (see
``phys_l2o.registry``) that is built for the field's feature width.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..registry import build_part, register
from .potential import Potential

#: the pieces of a field and the registry kind of each.
PIECES = {"potential": "potential", "inverse_inertia": "inverse-inertia",
          "dissipation": "dissipation", "control": "control"}

Piece = nn.Module | Mapping[str, Any] | str | None


def feature_width(module: object) -> int | None:
    """The feature width ``d`` a module was built for (its ``width``), or ``None`` if any."""
    width = getattr(module, "width", None)
    return width if isinstance(width, int) and not isinstance(width, bool) else None


@register("field", "port-hamiltonian")
class PortHamiltonianField(nn.Module):
    """``forward(q, q_dot, grad=None) -> (dq/dt, dq_dot/dt)``, each of shape ``(..., d)``.

    Args:
        potential: gives ``dV/dq`` (``potential.gradient(q)``, or ``potential(q)`` for a plain
            module; ``potential.gradient(q, grad)`` when the step's loss gradient ``grad`` is
            given).
        inverse_inertia: maps a force to an acceleration, ``v -> M^{-1} v``; ``None`` is ``M = I``.
        dissipation: maps ``[dV/dq, q_dot]`` (``(..., 2d)``) to ``[D_q, D_p]``; ``None`` is
            ``D = 0``.
        control: maps ``q`` to the external force ``G(q)``; ``None`` is ``G = 0``.
        width: the feature width ``d``; needed only to build pieces given as specs, which the
            learned optimizer that builds the field passes on.

    Each piece may be a module, a spec or a registered name. ``width`` is the common width
    of the pieces (``None`` if none of them has one).

    Raises:
        ValueError: two pieces were built for different widths, or a piece for another width
            than ``width``.
    """

    def __init__(self, potential: Piece, inverse_inertia: Piece = None,
                 dissipation: Piece = None, control: Piece = None, *,
                 width: int | None = None) -> None:
        super().__init__()
        context = {} if width is None else {"width": width}
        self.potential = build_part(potential, "potential", **context)
        self.inverse_inertia = build_part(inverse_inertia, "inverse-inertia", **context)
        self.dissipation = build_part(dissipation, "dissipation", **context)
        self.control = build_part(control, "control", **context)
        if self.potential is None:
            raise ValueError("a port-Hamiltonian field needs a potential")
        widths = {name: feature_width(getattr(self, name)) for name in PIECES}
        widths = {name: w for name, w in widths.items() if w is not None}
        if width is not None:
            wrong = {name: w for name, w in widths.items() if w != width}
            if wrong:
                raise ValueError(f"the field has width {width} but its pieces were built for "
                                 f"{wrong}; build them with width {width}")
        elif len(set(widths.values())) > 1:
            raise ValueError(f"the field's pieces were built for different feature widths "
                             f"{widths}; build them all with one width")
        self.width = width if width is not None else next(iter(widths.values()), None)

    def potential_gradient(self, q: Tensor, grad: Tensor | None = None) -> Tensor:
        """``dV/dq`` at ``q`` (``grad``: the step's loss gradient, for a potential that uses
        it)."""
        if grad is not None:
            return self.potential.gradient(q, grad)
        if isinstance(self.potential, Potential):
            return self.potential.gradient(q)
        return self.potential(q)

    def forward(self, q: Tensor, q_dot: Tensor,
                grad: Tensor | None = None) -> tuple[Tensor, Tensor]:
        dv_dq = self.potential_gradient(q, grad)
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
