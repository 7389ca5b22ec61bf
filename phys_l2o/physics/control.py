"""Control ``G(q)``: an external force that depends on the coordinate and acts on the momentum."""

from __future__ import annotations

from torch import Tensor, nn

from .potential import mlp


class ControlMLP(nn.Module):
    """The paper's control: an MLP ``d -> hidden -> d`` (ReLU between), ``hidden = d`` in the paper.

    Maps ``q`` of shape ``(..., d)`` to the force ``G(q)`` of the same shape.
    """

    def __init__(self, width: int, hidden: int | None = None) -> None:
        super().__init__()
        self.net = mlp(width, hidden or width, width)

    def forward(self, q: Tensor) -> Tensor:
        return self.net(q)
