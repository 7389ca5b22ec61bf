"""Gradient preprocessing of Andrychowicz et al. (2016), Appendix A.

Each scalar ``v`` becomes two features:

    (log(|v|) / k, sign(v))   if |v| >= exp(-k)
    (-1, exp(k) * v)          otherwise

which keeps the scale information of gradients that span many orders of magnitude.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class GradientPreprocessing(nn.Module):
    """``(..., 1) -> (..., 2)``; ``k = 10`` in the paper."""

    def __init__(self, k: float = 10.0) -> None:
        super().__init__()
        self.k = float(k)
        self.width = 2

    def forward(self, v: Tensor) -> Tensor:
        threshold = math.exp(-self.k)
        big = v.abs() >= threshold
        # clamp before the log: the unselected branch of `where` must stay finite for autograd
        log_part = torch.where(big, v.abs().clamp_min(threshold).log() / self.k,
                               -torch.ones_like(v))
        sign_part = torch.where(big, torch.sign(v), math.exp(self.k) * v)
        return torch.cat([log_part, sign_part], dim=-1)


class NoPreprocessing(nn.Module):
    """The identity, ``(..., 1) -> (..., 1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.width = 1

    def forward(self, v: Tensor) -> Tensor:
        return v


def make_preprocessing(enabled: bool) -> nn.Module:
    return GradientPreprocessing() if enabled else NoPreprocessing()
