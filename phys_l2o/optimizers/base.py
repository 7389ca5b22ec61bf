"""The optimizer contract shared by learned and hand-designed optimizers.

Parameters of a batch of ``B`` problems live in one tensor ``params`` of shape
``(batch, coords)``; ``segments`` gives the sizes of the parameter tensors packed into
``coords`` (e.g. ``(15680, 20, 200, 10)`` for a 784-20-10 MLP). An optimizer is a pair:

    state = optimizer.init_state(params, segments)
    params, state = optimizer.step(params, grad, state)

``step`` acts on every coordinate of every problem in one tensor program. For learned
optimizers it is differentiable with respect to the optimizer's own weights.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

State = dict[str, Any]


class LearnedOptimizer(nn.Module):
    """Base class for optimizers with meta-trainable weights.

    Subclasses implement ``init_state`` and ``step``. ``out_mul`` scales the output.
    """

    #: the name under which the optimizer is registered (used in checkpoints and reports).
    name: str = "learned"

    def init_state(self, params: Tensor, segments: Sequence[int]) -> State:
        raise NotImplementedError

    def step(self, params: Tensor, grad: Tensor, state: State) -> tuple[Tensor, State]:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this optimizer with ``phys_l2o.build_optimizer``."""
        raise NotImplementedError

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def compile_step(self, enabled: bool = True) -> LearnedOptimizer:
        """Run ``step`` through ``torch.compile`` (or back in eager mode with ``False``).

        Compilation fuses the many small element-wise operations of a step into a few loops,
        which pays on large problems (MNIST: 1.3-2.5x end to end); it costs seconds per new shape of
        ``params`` (and per grad mode) and needs a C++ compiler on the CPU. Results agree with
        eager mode to floating-point rounding. Returns ``self``.

        Raises:
            RuntimeError: no C++ compiler was found (see ``compile_available``).
        """
        self.__dict__.pop("step", None)
        if enabled:
            if not compile_available():
                raise RuntimeError("torch.compile needs a C++ compiler for CPU code and none was "
                                   "found (set $CXX or install g++ or clang++); or run in eager "
                                   "mode (compile_step(False), `--no-compile`)")
            # one compiled variant per shape, grad mode and state layout; meta-training,
            # validation and test sizes of a few optimizers exceed the default limit of 8
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            self.step = torch.compile(self.step, dynamic=False)
        return self


def compile_available() -> bool:
    """Whether ``torch.compile`` can build CPU code here: a C++ compiler is on the ``PATH``."""
    names = [os.environ.get("CXX", ""), "g++", "clang++", "c++"]
    return any(name and shutil.which(name) for name in names)


def detach_state(state: State) -> State:
    """Cut the state from the graph (at the end of a truncation)."""
    return {k: v.detach() if isinstance(v, Tensor) else v for k, v in state.items()}


def segment_ids(segments: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    """``(coords,)`` index of the parameter tensor each coordinate belongs to."""
    sizes = torch.as_tensor(list(segments), device=device)
    return torch.repeat_interleave(torch.arange(len(sizes), device=device), sizes)


def segment_normalize(x: Tensor, ids: Tensor, num_segments: int, eps: float = 1e-12) -> Tensor:
    """Divide ``x`` ``(batch, coords)`` by its L2 norm over each parameter tensor of a problem."""
    if num_segments == 1:
        return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)
    sq = x.new_zeros(x.shape[0], num_segments).index_add_(1, ids, x * x)
    return x / sq.sqrt().clamp_min(eps)[:, ids]
