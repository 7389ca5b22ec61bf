"""Positive per-feature scales, the building block of the diagonal (learned or fixed) pieces.

A ``PositiveScale`` holds a vector ``s`` of shape ``(d,)`` with ``s >= 0``. A learned
positive entry is stored as ``log s`` (so it stays positive and Adam moves it
multiplicatively); a zero entry, or any entry of a fixed scale, is a constant that never
changes and is not saved in the ``state_dict`` (the configuration rebuilds it).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn


class PositiveScale(nn.Module):
    """A vector ``s`` of shape ``(d,)``, every entry ``value``; ``forward()`` returns it.

    Args:
        width: the feature width ``d``.
        value: the initial (or fixed) value, ``>= 0``; ``0`` is always fixed at zero.
        learn: learn ``log s`` (only for ``value > 0``); else ``s`` is a fixed buffer.
    """

    def __init__(self, width: int, value: float, learn: bool = True) -> None:
        super().__init__()
        if not (value >= 0 and math.isfinite(value)):
            raise ValueError(f"a positive scale must be finite and >= 0, got {value}")
        self.learned = bool(learn and value > 0)
        self._exact = float(value)
        if self.learned:
            self.log_value = nn.Parameter(torch.full((width,), math.log(value)))
        else:
            # not persistent: a fixed value belongs to the configuration, not to the weights
            self.register_buffer("value", torch.full((width,), float(value)), persistent=False)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> PositiveScale:
        # a fixed value is recomputed after a dtype change (``.double()``) so that it is the
        # exact ``value`` in the new precision, not a widened float32 rounding
        super()._apply(fn, recurse)
        if not self.learned:
            self.value = torch.full_like(self.value, self._exact)
        return self

    def forward(self) -> Tensor:
        return self.log_value.exp() if self.learned else self.value
