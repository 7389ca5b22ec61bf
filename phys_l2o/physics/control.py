"""Control ``G(q)``: an external force that depends on the coordinate and acts on the momentum.

Every module derives from ``Control`` and maps ``q`` of shape ``(..., d)`` to the force ``G(q)``
of the same shape.
"""

from __future__ import annotations

from torch import Tensor, nn

from ..registry import register
from .linear import FeatureMLP


class Control(nn.Module):
    """Base class: ``forward(q)`` maps the coordinate ``q`` ``(..., d)`` to the external force
    ``G(q)`` ``(..., d)``, added to the force on the momentum.

    Example:
        >>> import torch
        >>> class Pull(Control):
        ...     def forward(self, q):
        ...         return -q
        >>> Pull()(torch.ones(3, 2)).shape
        torch.Size([3, 2])
    """

    #: the feature width ``d`` it was built for; ``None``: it works for any width.
    width: int | None = None
    #: whether ``torch.compile`` can run it (``LearnedOptimizer.compiled`` checks).
    compilable: bool = True

    def forward(self, q: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")


@register("control", "control-mlp")
class ControlMLP(FeatureMLP, Control):
    """The paper's control: an MLP ``d -> hidden -> d`` (ReLU between), ``hidden = d`` in the paper.

    Maps ``q`` of shape ``(..., d)`` to the force ``G(q)`` of the same shape.
    """
