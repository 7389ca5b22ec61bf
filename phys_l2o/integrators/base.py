"""The read-out contract: how a learned optimizer turns its field into an update.

A read-out takes the port-Hamiltonian field and the gradient-state ``(q, q_dot)`` of every
coordinate and gives the optimizer's output:

    direction, next_q_dot = readout(field, q, q_dot)

``q`` and ``q_dot`` have shape ``(..., d)``; ``direction`` and ``next_q_dot`` have shape
``(..., 1)``. The optimizer moves the parameters by ``out_mul * direction`` and feeds
``next_q_dot`` back at the next step. Read-outs may own learned weights; they are registered
as the ``readout`` kind (``phys_l2o.registry``), the flow maps they may integrate with as the
``flow`` kind (``.flows``).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..checks import positive_int


class Readout(nn.Module):
    """Base class. Subclasses take ``width`` (the feature width ``d``) and keyword options.

    Attributes:
        width: the feature width ``d`` the read-out's heads were built for.
        nfe: function evaluations of the field in the last call.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = positive_int("width", width)
        self.nfe = 0

    def forward(self, field: nn.Module, q: Tensor, q_dot: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError
