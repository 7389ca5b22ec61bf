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

Registered as ``flow-readout``; its ``flow`` is any flow map, a spec or a name
(``{"type": "flow-readout", "flow": {"type": "rk4", "horizon": 0.5}}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..physics.linear import FeatureLinear
from ..registry import build_part, register
from .base import Readout
from .flows import Flow


@register("readout", "flow-readout")
class FlowReadout(Readout):
    """Integrate ``(q, q_dot)`` with a flow map, then apply the paper's two heads.

    Args:
        width: the feature width ``d``.
        flow: the flow map: a ``Flow``, a spec or a registered name (``"rk4"``,
            ``{"type": "dopri5", "rtol": 1e-3}``, ``"symplectic-euler"``, ...).
    """

    def __init__(self, width: int, flow: Flow | Mapping[str, Any] | str = "rk4") -> None:
        super().__init__(width)
        self.flow = build_part(flow, "flow")
        if not isinstance(self.flow, Flow):
            raise ValueError(f"flow must be a flow map (a Flow, its spec or its name), got "
                             f"{flow!r}")
        self.direction_head = FeatureLinear(2 * width, 1, bias=False)
        self.q_dot_head = FeatureLinear(2 * width, 1)

    def forward(self, field: nn.Module, q: Tensor, q_dot: Tensor) -> tuple[Tensor, Tensor]:
        q_t, q_dot_t = self.flow(field, q, q_dot)
        v_q = (q_t - q) / self.flow.horizon
        v_q_dot = (q_dot_t - q_dot) / self.flow.horizon
        direction = self.direction_head(torch.cat([v_q, q], dim=-1))
        next_q_dot = self.q_dot_head(torch.cat([v_q, v_q_dot], dim=-1))
        return direction, next_q_dot
