"""The coordinatewise LSTM optimizer of Andrychowicz et al. (2016).

Two stacked ``LSTMCell``s of 20 units and a ``Linear(20 -> 1)`` shared by every coordinate;
input the (optionally preprocessed) gradient; ``theta' = theta + out_mul * output``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn

from ..checks import positive_int, positive_number
from ..registry import register
from .base import LearnedOptimizer, check_init, check_step
from .preprocessing import build_preprocessing


class LSTMState(NamedTuple):
    """Hidden and cell states of each layer, each ``(batch * coords, hidden)``; with
    ``alias_grad``, the gradient of the truncation's first step (``shared``, else empty)."""

    h: tuple[Tensor, ...]
    c: tuple[Tensor, ...]
    shared: tuple[Tensor, ...] = ()


@register("optimizer", "lstm")
class LSTMOptimizer(LearnedOptimizer):
    """The coordinatewise LSTM optimizer: 5221 weights with the paper's settings, 5301 with
    preprocessing.

    Args:
        preprocessing: ``True`` for the L2L gradient preprocessing (input width 2), ``False``
            for none (width 1), or a preprocessing module, spec or name.
        hidden: units per LSTM layer.
        layers: stacked ``LSTMCell``s.
        out_mul: scale of the parameter step.
        alias_grad: reproduce how the original quadratic LSTM reads its input (difference D6
            of the ``reference`` protocol): the gradient it is handed at a truncation's first
            step shares memory with the optimizee's ``p.grad``, into which the truncation's
            later steps add their gradients in place. The forward pass is unchanged; the
            meta-gradient of the first layer's input weights is computed from that summed
            gradient (about 7x too large on the quadratic). With preprocessing the LSTM reads a
            new tensor and the switch changes nothing, as in the original. Not compilable.
    """

    name = "lstm"
    #: protocol switches, named in a spec only when on
    spec_quiet = ("alias_grad",)

    def __init__(self, *, preprocessing: bool | Mapping[str, Any] | str | nn.Module = False,
                 hidden: int = 20, layers: int = 2, out_mul: float = 1.0,
                 alias_grad: bool = False) -> None:
        super().__init__()
        positive_int("hidden", hidden)
        positive_int("layers", layers)
        out_mul = positive_number("out_mul", out_mul)
        self.preprocess = build_preprocessing(preprocessing)
        sizes = [self.preprocess.width] + [hidden] * layers
        self.cells = nn.ModuleList(nn.LSTMCell(a, b) for a, b in zip(sizes, sizes[1:]))
        self.head = nn.Linear(hidden, 1)
        self.hidden = hidden
        self.out_mul = out_mul
        self.alias_grad = bool(alias_grad)
        # ``torch.compile`` would copy the input it saves for the backward pass
        self.compilable = not self.alias_grad

    def init_state(self, params: Tensor, segments: Sequence[int]) -> LSTMState:
        check_init(params, segments)
        # distinct tensors (not one zero tensor shared): aliasing would recompile a compiled step
        def zeros() -> tuple[Tensor, ...]:
            return tuple(params.new_zeros(params.numel(), self.hidden) for _ in self.cells)

        return LSTMState(zeros(), zeros())

    def state_to_coordinates(self, state: LSTMState) -> dict[str, Tensor]:
        # with one problem, the rows (batch coords) are the coordinates
        return {f"{kind}{i}": t for kind, ts in zip("hc", state) for i, t in enumerate(ts)}

    def state_from_coordinates(self, fields: dict[str, Tensor], params: Tensor,
                               segments: Sequence[int]) -> LSTMState:
        return LSTMState(*(tuple(fields[f"{kind}{i}"] for i in range(len(self.cells)))
                           for kind in "hc"))

    def _aliased(self, grad: Tensor, state: LSTMState) -> tuple[Tensor, tuple[Tensor, ...]]:
        """The input and ``shared`` state under ``alias_grad`` while meta-training."""
        if state.h[0].grad_fn is None:  # a truncation's first step: its state has no graph
            shared = grad.clone()
            return shared, (shared,)
        # ``.data`` bypasses autograd's check of saved tensors, as the original's aliasing does
        state.shared[0].data.add_(grad)
        return grad, state.shared

    def step(self, params: Tensor, grad: Tensor, state: LSTMState) -> tuple[Tensor, LSTMState]:
        check_step(params, grad)
        shared: tuple[Tensor, ...] = ()
        if self.alias_grad and torch.is_grad_enabled() and self.head.weight.requires_grad:
            grad, shared = self._aliased(grad, state)
        # every coordinate of every problem is one row of the shared cells
        x = self.preprocess(rearrange(grad, "batch coords -> (batch coords) 1"))
        hs, cs = [], []
        for cell, h, c in zip(self.cells, state.h, state.c):
            h, c = cell(x, (h, c))
            hs.append(h)
            cs.append(c)
            x = h
        update = rearrange(self.head(x), "(batch coords) 1 -> batch coords",
                           batch=params.shape[0])
        return params + self.out_mul * update, LSTMState(tuple(hs), tuple(cs), shared)
