"""Linear maps over a coordinate's handful of features, written so that compilation fuses them.

A learned optimizer applies its small layers (``d = 1`` to ``4`` features in the paper) to every
coordinate of every problem, so a layer is a ``(rows, k) @ (k, n)`` product with millions of
rows and tiny ``k``: a matrix-multiply call that is all memory traffic. Under
``torch.compile`` (see ``LearnedOptimizer.compiled``) these products are written as ``k``
broadcast multiply-adds instead, which the compiler fuses with the element-wise operations
around them into a few loops; in eager mode they stay one matrix product, the faster choice
there. Both give the same numbers up to floating-point rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: widest input unrolled into multiply-adds under compilation (wider products stay matmuls).
MAX_UNROLLED_FEATURES = 8


def feature_matmul(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T (+ bias)`` over the last axis: ``(..., k)``, ``(n, k)`` give ``(..., n)``."""
    k = weight.shape[-1]
    if not torch.compiler.is_compiling() or k > MAX_UNROLLED_FEATURES:
        return F.linear(x, weight, bias)
    out = x[..., 0:1] * weight[:, 0]
    for i in range(1, k):
        out = out + x[..., i:i + 1] * weight[:, i]
    return out if bias is None else out + bias


class FeatureLinear(nn.Linear):
    """``nn.Linear`` (same weights and state-dict keys) computed by ``feature_matmul``."""

    def forward(self, x: Tensor) -> Tensor:
        return feature_matmul(x, self.weight, self.bias)


def mlp(width_in: int, hidden: int, width_out: int, bias: bool = True) -> nn.Sequential:
    """``Linear -> ReLU -> Linear`` over a coordinate's features, of ``FeatureLinear`` layers."""
    return nn.Sequential(FeatureLinear(width_in, hidden, bias=bias), nn.ReLU(),
                         FeatureLinear(hidden, width_out, bias=bias))


class FeatureMLP(nn.Module):
    """The paper's two-layer block ``d -> hidden -> d`` (ReLU between) of its control ``G`` and
    its ``dV/dq``; ``hidden = d`` by default, as in the paper. ``(..., d) -> (..., d)``.

    Args:
        width: the feature width ``d``.
        hidden: hidden units (``None``: ``d``).
    """

    def __init__(self, width: int, hidden: int | None = None) -> None:
        super().__init__()
        self.width = width
        self.net = mlp(width, hidden or width, width)

    def forward(self, q: Tensor) -> Tensor:
        return self.net(q)
