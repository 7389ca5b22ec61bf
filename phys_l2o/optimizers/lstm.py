"""The coordinatewise LSTM optimizer of Andrychowicz et al. (2016).

Two stacked ``LSTMCell``s of 20 units and a ``Linear(20 -> 1)`` shared by every coordinate;
input the (optionally preprocessed) gradient; the update is the output (applied as
``theta + out_mul * output``).

**The step.** Each layer computes exactly what ``nn.LSTMCell`` computes (its weights live in
``nn.LSTMCell`` modules, so checkpoints are those of the cells), in a layout made for one cell
shared by many coordinates: states are ``(hidden, rows)``, so the gates of all rows come from
one matrix product ``[W_ih W_hh b] @ [x; h; 1]`` of shape ``(4 hidden, rows)`` and each gate
is a contiguous block that the element-wise work (four activations, the new cell and hidden
state) reads in long vectors. Its backward pass (``LSTMCellFunction``) is written out: it
recomputes the activations from the saved gates instead of storing them, and forms the weight
gradients as ``[x; h] @ dgates^T``, which splits over threads along the rows.
``compiled()`` compiles the whole step, forward and written-out backward, which fuses each
layer's element-wise work into one loop (with ``tanh`` computed through ``exp``:
``compile_options``). ``tests/test_optimizers.py`` checks values and meta-gradients against
``nn.LSTMCell``, eager and compiled.
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


def _activations(gates: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    i, f, g, o = gates.chunk(4, 0)
    return torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)


def cell_update(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """``nn.LSTMCell``'s element-wise work: the new hidden and cell states ``(hidden, rows)``
    from the gates' pre-activations ``(4 hidden, rows)`` (input, forget, cell, output)."""
    i, f, g, o = _activations(gates)
    c = f * c + i * g
    return o * torch.tanh(c), c


def cell_update_backward(gates: Tensor, c: Tensor, c_new: Tensor, dh: Tensor,
                         dc: Tensor) -> tuple[Tensor, Tensor]:
    """The gradients of the gates' pre-activations and of the previous cell state, given those
    of the new hidden and cell states (the activations are recomputed from ``gates``)."""
    i, f, g, o = _activations(gates)
    t = torch.tanh(c_new)
    dc = dc + dh * o * (1 - t * t)
    dgates = torch.cat([dc * g * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - g * g),
                        dh * t * o * (1 - o)])
    return dgates, dc * f


class LSTMCellFunction(torch.autograd.Function):
    """One ``nn.LSTMCell`` step on ``(features, rows)`` inputs, with its backward written out.

    ``forward`` also returns the gates' pre-activations, which the backward pass reads (not
    differentiable; ``lstm_cell`` drops them). ``x`` is read again in the backward pass to form
    the input weights' gradient, as ``nn.LSTMCell`` does (``alias_grad`` relies on it). Its
    ``vmap`` rule is generated (``torch.func.vmap`` steps a population of LSTMs at once)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor,
                bias: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ones = x.new_ones(1, x.shape[1])
        gates = torch.mm(torch.cat([w_ih, w_hh, bias[:, None]], 1), torch.cat([x, h, ones]))
        h_new, c_new = cell_update(gates, c)
        return h_new, c_new, gates

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor, ...], output: tuple[Tensor, ...]) -> None:
        x, h, c, w_ih, w_hh, _ = inputs
        _, c_new, gates = output
        ctx.mark_non_differentiable(gates)
        ctx.save_for_backward(x, h, c, w_ih, w_hh, gates, c_new)

    @staticmethod
    def backward(ctx, dh: Tensor, dc: Tensor, _dgates: Tensor):
        x, h, c, w_ih, w_hh, gates, c_new = ctx.saved_tensors
        dgates, dc_prev = cell_update_backward(gates, c, c_new, dh, dc)
        need = ctx.needs_input_grad
        dx = dh_prev = dw_ih = dw_hh = db = None
        if need[0] or need[1]:
            d_in = torch.mm(torch.cat([w_ih, w_hh], 1).t(), dgates)
            dx, dh_prev = d_in[:x.shape[0]], d_in[x.shape[0]:]
        if need[3] or need[4]:
            # a product over the rows: as [x; h] @ dgates^T it splits over threads
            dw = torch.mm(torch.cat([x, h]), dgates.t()).t()
            dw_ih, dw_hh = dw[:, :x.shape[0]], dw[:, x.shape[0]:]
        if need[5]:
            db = dgates.sum(1)
        return dx, dh_prev, dc_prev, dw_ih, dw_hh, db


def lstm_cell(x: Tensor, h: Tensor, c: Tensor, w_ih: Tensor, w_hh: Tensor,
              bias: Tensor) -> tuple[Tensor, Tensor]:
    """The new hidden and cell states ``(hidden, rows)`` of ``LSTMCellFunction``."""
    h_new, c_new, _ = LSTMCellFunction.apply(x, h, c, w_ih, w_hh, bias)
    return h_new, c_new


class LSTMState(NamedTuple):
    """Hidden and cell states of each layer, each ``(hidden, batch * coords)``; with
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
        out_mul: the scale the updates are trained and applied with (``step_scale``).
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
    #: tanh through exp: the compiler's own vectorized tanh is several times slower
    compile_options = {"cpp.use_decompose_tanh": True}

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

    @property
    def coordinatewise(self) -> bool:
        return True

    def init_state(self, params: Tensor, segments: Sequence[int]) -> LSTMState:
        check_init(params, segments)
        # distinct tensors (not one zero tensor shared): aliasing would recompile a compiled step
        def zeros() -> tuple[Tensor, ...]:
            return tuple(params.new_zeros(self.hidden, params.numel()) for _ in self.cells)

        return LSTMState(zeros(), zeros())

    def state_to_coordinates(self, state: LSTMState) -> dict[str, Tensor]:
        # with one problem, the rows (batch coords) are the coordinates
        return {f"{kind}{i}": t.t() for kind, ts in zip("hc", state[:2])
                for i, t in enumerate(ts)}

    def state_from_coordinates(self, fields: dict[str, Tensor], params: Tensor,
                               segments: Sequence[int]) -> LSTMState:
        # views, no copy: the step reads them as (hidden, rows) with rows contiguous
        return LSTMState(*(tuple(fields[f"{kind}{i}"].t() for i in range(len(self.cells)))
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
        # every coordinate of every problem is one row (a column here) of the shared cells
        x = self.preprocess(rearrange(grad, "batch coords -> (batch coords) 1")).t()
        hs, cs = [], []
        for cell, h, c in zip(self.cells, state.h, state.c):
            h, c = lstm_cell(x, h, c, cell.weight_ih, cell.weight_hh,
                             cell.bias_ih + cell.bias_hh)
            hs.append(h)
            cs.append(c)
            x = h
        out = torch.addmm(self.head.bias[:, None], self.head.weight, x)
        update = rearrange(out, "1 (batch coords) -> batch coords", batch=params.shape[0])
        return update, LSTMState(tuple(hs), tuple(cs), shared)
