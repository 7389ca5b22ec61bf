"""Control ``G(q)``: an external force that depends on the coordinate and acts on the momentum."""

from __future__ import annotations

from ..registry import register
from .linear import FeatureMLP


@register("control", "control-mlp")
class ControlMLP(FeatureMLP):
    """The paper's control: an MLP ``d -> hidden -> d`` (ReLU between), ``hidden = d`` in the paper.

    Maps ``q`` of shape ``(..., d)`` to the force ``G(q)`` of the same shape.
    """
