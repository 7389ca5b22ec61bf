"""Gradient-state Neural-ODE read-outs: integrate the field over a horizon, then read out.

The first idea of the paper's Discussion (section IV): ``q`` is the (preprocessed) gradient
and ``q_dot`` the carried state; the field is *integrated* from ``0`` to ``T`` (any flow map
of ``.flows``) instead of being evaluated once. With ``(q_T, q_dot_T)`` the state at ``T``:

    v_q        = (q_T - q) / T                 mean velocity of the gradient   (..., d)
    v_qdot     = (q_dot_T - q_dot) / T                                          (..., d)
    direction  = W_1 [v_q, q]                  Linear(2d -> 1), no bias         (..., 1)
    next_q_dot = W_2 [v_q, v_qdot] + b         Linear(2d -> 1)                  (..., 1)

``W_1 [v_q, q] = (w_a / T) q_T + (w_b - w_a / T) q`` is a learned mix of the corrected
gradient ``q_T`` and the raw one. The heads are the paper's: one explicit Euler step of size
``T`` gives ``v_q = dq/dt``, ``v_qdot = dq_dot/dt`` and so reproduces ``EulerReadout``
exactly (same weights, same ``state_dict`` keys, ``4d + 1`` weights).

Registered under every flow map's name (``euler``, ``rk4``, ``dopri5``, ``symplectic-euler``,
...); the options are the flow map's (``horizon``, ``rtol``, ``atol``, ``options``,
``adjoint``; ``steps`` for the symplectic schemes).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor, nn

from ..physics.linear import FeatureLinear
from .base import Integrator, register_integrator
from .flows import FLOWS, make_flow


class FlowReadout(Integrator):
    """Integrate ``(q, q_dot)`` with the flow map ``flow_name``, then apply the two heads.

    Args:
        width: the feature width ``d``.
        **options: options of the flow map (e.g. ``horizon=1.0``, ``rtol``, ``atol``,
            ``options={"step_size": 0.25}``, ``adjoint=True``).
    """

    #: the registered flow map this read-out integrates with.
    flow_name: str = ""

    def __init__(self, width: int, **options: Any) -> None:
        super().__init__()
        self.flow = make_flow(self.flow_name, options)
        self.direction_head = FeatureLinear(2 * width, 1, bias=False)
        self.q_dot_head = FeatureLinear(2 * width, 1)

    def forward(self, field: nn.Module, q: Tensor, q_dot: Tensor) -> tuple[Tensor, Tensor]:
        q_t, q_dot_t = self.flow(field, q, q_dot)
        self.nfe = self.flow.nfe
        v_q = (q_t - q) / self.flow.horizon
        v_q_dot = (q_dot_t - q_dot) / self.flow.horizon
        direction = self.direction_head(torch.cat([v_q, q], dim=-1))
        next_q_dot = self.q_dot_head(torch.cat([v_q, v_q_dot], dim=-1))
        return direction, next_q_dot


def flow_readout(flow_name: str) -> type[FlowReadout]:
    """A ``FlowReadout`` subclass for the flow map ``flow_name`` (register it yourself)."""
    if flow_name not in FLOWS:
        raise ValueError(f"unknown flow map {flow_name!r}; choose from {sorted(FLOWS)}")
    name = "".join(part.capitalize() for part in re.split(r"[-_]", flow_name)) + "Readout"
    return type(name, (FlowReadout,), {
        "flow_name": flow_name, "__module__": __name__, "__qualname__": name,
        "__doc__": f"The gradient-state read-out integrated with ``{flow_name}`` "
                   "(see FlowReadout)."})


for _flow_name in list(FLOWS):
    register_integrator(_flow_name)(flow_readout(_flow_name))
