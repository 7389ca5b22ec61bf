"""Gradient preprocessing: the features a learned optimizer sees of each scalar it is fed.

``l2l-preprocessing`` is that of Andrychowicz et al. (2016), Appendix A. Each scalar ``v``
becomes two features:

    (log(|v|) / k, sign(v))   if |v| >= exp(-k)
    (-1, exp(k) * v)          otherwise

which keeps the scale information of gradients that span many orders of magnitude.
``no-preprocessing`` passes ``v`` on as one feature. A preprocessing's ``width`` is the
feature width ``d`` of the pieces that read its output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import positive_number
from ..registry import build_part, register


@register("preprocessing", "l2l-preprocessing")
class GradientPreprocessing(nn.Module):
    """``(..., 1) -> (..., 2)``; ``k = 10`` in the paper."""

    def __init__(self, k: float = 10.0) -> None:
        super().__init__()
        self.k = positive_number("k", k)
        self.width = 2

    def forward(self, v: Tensor) -> Tensor:
        threshold = math.exp(-self.k)
        big = v.abs() >= threshold
        # clamp before the log: the unselected branch of `where` must stay finite for autograd
        log_part = torch.where(big, v.abs().clamp_min(threshold).log() / self.k,
                               -torch.ones_like(v))
        sign_part = torch.where(big, torch.sign(v), math.exp(self.k) * v)
        return torch.cat([log_part, sign_part], dim=-1)


@register("preprocessing", "no-preprocessing")
class NoPreprocessing(nn.Module):
    """The identity, ``(..., 1) -> (..., 1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.width = 1

    def forward(self, v: Tensor) -> Tensor:
        return v


def build_preprocessing(value: bool | nn.Module | Mapping[str, Any] | str) -> nn.Module:
    """``True``: the L2L preprocessing; ``False``: none; else a module, a spec or a name."""
    if value is True:
        return GradientPreprocessing()
    if value is False or value is None:
        return NoPreprocessing()
    module = build_part(value, "preprocessing")
    if not isinstance(getattr(module, "width", None), int):
        raise ValueError(f"a preprocessing must say its output width d (an int `width` "
                         f"attribute); {type(module).__name__} has none")
    return module
