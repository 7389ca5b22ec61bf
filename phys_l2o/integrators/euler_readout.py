"""The paper's single-step Euler read-out (the default read-out).

One evaluation ``h = [dq/dt, dq_dot/dt] = field(q, q_dot)``; a learned step size replaces the
unknown ``Delta t`` of ``q + Delta t * dq/dt``:

    direction  = W_1 [dq/dt, q]          (Linear(2d -> 1), no bias)
    next_q_dot = W_2 [dq/dt, dq_dot/dt] + b   (Linear(2d -> 1))
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..physics.linear import FeatureLinear
from ..registry import register
from .base import Readout


@register("readout", "euler-readout")
class EulerReadout(Readout):
    """The paper's read-out: one field evaluation, two learned linear heads (``4d + 1`` weights).

    Args:
        width: the feature width ``d``.
    """

    def __init__(self, width: int) -> None:
        super().__init__(width)
        self.direction_head = FeatureLinear(2 * width, 1, bias=False)
        self.q_dot_head = FeatureLinear(2 * width, 1)

    def forward(self, field: nn.Module, q: Tensor, q_dot: Tensor) -> tuple[Tensor, Tensor]:
        dq_dt, dq_dot_dt = field(q, q_dot)
        direction = self.direction_head(torch.cat([dq_dt, q], dim=-1))
        next_q_dot = self.q_dot_head(torch.cat([dq_dt, dq_dot_dt], dim=-1))
        return direction, next_q_dot
