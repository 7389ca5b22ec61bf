"""The optimizer contract shared by learned and hand-designed optimizers.

Parameters of a batch of ``B`` problems live in one tensor ``params`` of shape
``(batch, coords)``; ``segments`` gives the sizes of the parameter tensors packed into
``coords`` (e.g. ``(15680, 20, 200, 10)`` for a 784-20-10 MLP). An optimizer keeps the
``Optimizer`` protocol: ``step`` returns an *update*, not new parameters, and one function,
``advance``, applies it (optax's convention: scaling is the last link):

    state = optimizer.init_state(params, segments)
    update, state = optimizer.step(params, grad, state)
    params = apply_update(params, update, scale)      # params + scale * update

``advance(optimizer, params, grad, state, scale=None)`` does both, with ``scale`` defaulting to
the optimizer's ``step_scale`` (a learned optimizer's trained ``out_mul``; 1 for the
baselines). ``step`` acts on every coordinate of every problem in one tensor program. Its
state is a ``NamedTuple`` of the optimizer's own (``HNNState``, ``LSTMState``, ...). For
learned optimizers (``LearnedOptimizer``) ``step`` is differentiable with respect to the
optimizer's own weights. Every optimizer has a spec (``phys_l2o.spec_of``) that rebuilds it.
``LearnedOptimizer.compiled()`` gives a ``CompiledOptimizer``: the same optimizer whose
``advance`` runs through ``torch.compile``, with the compiler's settings scoped to it.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor, nn

from ..registry import Spec, spec_of

S = TypeVar("S", bound=tuple)


@runtime_checkable
class Optimizer(Protocol[S]):
    """What ``rollout``, ``evaluate``, ``compare`` and ``meta_train`` need of an optimizer.

    Attributes:
        name: the registered name (``"hnn"``, ``"adam"``, ...), used in reports.
    """

    name: str

    @property
    def step_scale(self) -> float:
        """The scale ``advance`` applies updates with by default."""
        ...

    def init_state(self, params: Tensor, segments: Sequence[int]) -> S:
        """The state before the first step, for ``params`` ``(batch, coords)``."""
        ...

    def step(self, params: Tensor, grad: Tensor, state: S) -> tuple[Tensor, S]:
        """``params`` and ``grad`` ``(batch, coords)`` to the update ``(batch, coords)`` and
        the next state."""
        ...

    def num_params(self) -> int | None:
        """Meta-trainable weights (``None`` for a hand-designed optimizer)."""
        ...

    def spec(self) -> Spec:
        """The spec that rebuilds this optimizer (``phys_l2o.build``)."""
        ...


class Segments(NamedTuple):
    """Which parameter tensor each coordinate belongs to: a static fact of a problem family.

    Attributes:
        ids: ``(coords,)`` index of the parameter tensor of each coordinate.
        count: the number of parameter tensors.
    """

    ids: Tensor
    count: int

    @classmethod
    def of(cls, segments: Sequence[int], device: torch.device | str | None = None) -> Segments:
        """From the sizes of the parameter tensors, e.g. ``(15680, 20, 200, 10)``."""
        sizes = list(segments)
        if not sizes or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1
                                for s in sizes):
            raise ValueError(f"segments must be a non-empty list of positive sizes, got "
                             f"{segments!r}")
        sizes_t = torch.as_tensor(sizes, device=device)
        ids = torch.repeat_interleave(torch.arange(len(sizes), device=device), sizes_t)
        return cls(ids, len(sizes))


def apply_update(params: Tensor, update: Tensor, scale: float) -> Tensor:
    """The next parameters: ``params + scale * update``, each ``(batch, coords)``."""
    return params + scale * update


def step_scale(optimizer: Any) -> float:
    """The scale ``optimizer``'s updates are applied with by default (its ``step_scale``)."""
    return float(getattr(optimizer, "step_scale", 1.0))


def advance(optimizer: Any, params: Tensor, grad: Tensor, state: Any,
            scale: float | None = None) -> tuple[Tensor, Any]:
    """One optimizer step applied: ``(params + scale * update, state')``.

    The one place where parameters move: rollouts, meta-training, evaluation and the
    ``torch.optim`` adapter all step through it. ``scale`` defaults to the optimizer's
    ``step_scale``; a ``CompiledOptimizer`` runs this whole function compiled.
    """
    if isinstance(optimizer, CompiledOptimizer):
        return optimizer.advance(params, grad, state, scale)
    update, state = optimizer.step(params, grad, state)
    return apply_update(params, update, step_scale(optimizer) if scale is None else scale), state


class LearnedOptimizer(nn.Module):
    """Base class for optimizers with meta-trainable weights.

    Subclasses implement ``init_state`` and ``step`` (which returns an update) and are
    registered as the ``optimizer`` kind (``@register("optimizer", name)``). Their updates are
    applied with ``step_scale``: the ``out_mul`` they were built (and trained) with, 1 if
    they have none.
    """

    #: the name under which the optimizer is registered (used in checkpoints and reports).
    name: str = "learned"
    #: inductor options of ``compiled`` (a class may tune its compiled code).
    compile_options: dict[str, Any] = {}

    @property
    def step_scale(self) -> float:
        """The scale of the updates: the trained ``out_mul`` (1 without one)."""
        return float(getattr(self, "out_mul", 1.0))

    def init_state(self, params: Tensor, segments: Sequence[int]) -> tuple:
        raise NotImplementedError

    def step(self, params: Tensor, grad: Tensor, state: Any) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def spec(self) -> Spec:
        """The spec that rebuilds this optimizer with ``phys_l2o.build`` (see ``spec_of``)."""
        return spec_of(self)

    def state_to_coordinates(self, state: Any) -> dict[str, Tensor]:
        """The per-coordinate part of a one-problem state: named tensors ``(coords, ...)``.

        ``phys_l2o.optim.LearnedOptim`` keeps these per parameter tensor, so that each
        parameter's slice can be saved, restored and regrouped.
        """
        raise NotImplementedError(f"{type(self).__name__} does not say which parts of its state "
                                  "are per coordinate: implement state_to_coordinates and "
                                  "state_from_coordinates to use it with LearnedOptim")

    def state_from_coordinates(self, fields: dict[str, Tensor], params: Tensor,
                               segments: Sequence[int]) -> Any:
        """The inverse of ``state_to_coordinates`` for ``params`` ``(1, coords)``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement "
                                  "state_from_coordinates")

    #: the smallest parameter tensor its per-tensor normalization keeps informative: a
    #: unit-norm one-element tensor is only a sign. ``LearnedOptim`` normalizes smaller tensors
    #: of a group together (``normalization_segments``); 1 leaves every tensor on its own.
    min_segment: int = 1

    @property
    def coordinatewise(self) -> bool:
        """Whether each coordinate's update depends on its own gradient and state only (no
        normalization over a parameter tensor), so that the coordinates of a problem can be
        stepped in chunks (``LearnedOptim`` does, to bound its memory)."""
        return False

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def uncompilable_pieces(self) -> list[str]:
        """The classes of the pieces that ``torch.compile`` cannot run (``compilable = False``)."""
        return sorted({type(m).__name__ for m in self.modules()
                       if getattr(m, "compilable", True) is False})

    def compiled(self, *, mode: str | None = None) -> CompiledOptimizer:
        """This optimizer with its ``advance`` run through ``torch.compile``.

        On a GPU, steps without meta-gradients (evaluation, validation) are compiled with
        ``mode="reduce-overhead"``: CUDA graphs replay a whole step in one launch, which is
        what a small step at a meta-batch of 1 needs; each step begins a new graph generation
        (``torch.compiler.cudagraph_mark_step_begin``), so a step's outputs stay valid until
        the next step. Steps with meta-gradients, and every step on the CPU, use the default
        mode. ``mode`` forces one mode for every step (``"default"``: no CUDA graphs, with the
        class's ``compile_options``; ``LearnedOptim`` uses it, as its state outlives a step).

        Compilation fuses the many small element-wise operations of a step into a few loops,
        which pays on large problems (MNIST: 1.3-2.5x end to end); it costs seconds per new
        shape of ``params`` (and per grad mode) and needs a C++ compiler on the CPU. Results
        agree with eager mode to floating-point rounding. The optimizer itself is unchanged:
        the wrapper shares its weights.

        Raises:
            RuntimeError: no C++ compiler was found (see ``compile_available``), or a piece of
                the optimizer cannot be compiled (its class sets ``compilable = False``, as
                ``ScalarPotentialMLP`` does, whose ``dV/dq`` is a derivative inside the step,
                the adaptive ODE flows, whose step size depends on the data, and the LSTM with
                ``alias_grad``).
        """
        blocked = self.uncompilable_pieces()
        if blocked:
            raise RuntimeError(f"this optimizer cannot be compiled: {', '.join(blocked)} "
                               "does what torch.compile does not trace (a derivative or a "
                               "step size inside the step, or an input aliased on purpose; "
                               "see its docstring); run it in eager mode (`--no-compile`)")
        if not compile_available():
            raise RuntimeError("torch.compile needs a C++ compiler for CPU code and none was "
                               "found (set $CXX or install g++ or clang++); or run in eager "
                               "mode (`--no-compile`)")
        return CompiledOptimizer(self, mode)


#: compiled variants per function: one per shape, grad mode and state layout; meta-training,
#: validation and test sizes of a few optimizers exceed torch's default limit of 8.
RECOMPILE_LIMIT = 64


class CompiledOptimizer:
    """A learned optimizer whose ``advance`` (step and update) runs compiled, once per mode.

    Everything else (``init_state``, ``parameters``, ``state_dict``, ``spec``, ...) is the
    wrapped optimizer's, ``module``. The compiler's settings (the recompile limit, the class's
    ``compile_options``) apply to this wrapper's calls only.
    """

    def __init__(self, module: LearnedOptimizer, mode: str | None = None) -> None:
        self.module, self.mode, self.compiled = module, mode, {}
        self.options = dict(module.compile_options)
        if not torch.cuda.is_available():  # torch warns of a missing CUDA runtime on CPU
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)

    def __repr__(self) -> str:
        return f"CompiledOptimizer({self.module!r})"

    def mode_for(self, params: Tensor) -> str | None:
        if self.mode is not None:
            return self.mode
        return "reduce-overhead" if params.is_cuda and not torch.is_grad_enabled() else None

    def _eager(self, params: Tensor, grad: Tensor, state: Any, scale: float | None,
               *inputs: Any) -> tuple[Tensor, Any]:
        return advance(self.module, params, grad, state, scale)

    def inputs(self) -> tuple:
        """Further inputs of the compiled function, computed eagerly before each call (a
        ``Stacked`` optimizer's stacked weights)."""
        return ()

    def advance(self, params: Tensor, grad: Tensor, state: Any,
                scale: float | None = None) -> tuple[Tensor, Any]:
        mode = self.mode_for(params)
        function = self.compiled.get(mode)
        if function is None:
            # torch.compile takes a mode or options; the default mode takes the options
            how = {"mode": mode} if mode not in (None, "default") else {"options": self.options}
            function = self.compiled[mode] = torch.compile(self._eager, dynamic=False, **how)
        if mode == "reduce-overhead" and params.is_cuda:
            torch.compiler.cudagraph_mark_step_begin()
        inputs = self.inputs()
        with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
            return function(params, grad, state, scale, *inputs)

    def step(self, params: Tensor, grad: Tensor, state: Any) -> tuple[Tensor, Any]:
        """The wrapped optimizer's update, eager (``advance`` is the compiled path)."""
        return self.module.step(params, grad, state)


def compile_available() -> bool:
    """Whether ``torch.compile`` can build CPU code here: a C++ compiler is on the ``PATH``."""
    names = [os.environ.get("CXX", ""), "g++", "clang++", "c++"]
    return any(name and shutil.which(name) for name in names)


def check_init(params: Tensor, segments: Sequence[int]) -> None:
    """``params`` is ``(batch, coords)`` and ``segments`` sizes that add up to ``coords``."""
    if not isinstance(params, Tensor) or params.dim() != 2:
        raise ValueError(f"params must be a (batch, coords) tensor, got "
                         f"{getattr(params, 'shape', type(params).__name__)}")
    Segments.of(segments)  # their types
    if sum(segments) != params.shape[1]:
        raise ValueError(f"the segment sizes {list(segments)} add up to {sum(segments)}, not to "
                         f"the {params.shape[1]} coordinates of params")


def check_step(params: Tensor, grad: Tensor) -> None:
    """``grad`` has the shape of ``params``."""
    if not isinstance(grad, Tensor) or grad.shape != params.shape:
        raise ValueError(f"grad must have the shape of params {tuple(params.shape)}, got "
                         f"{tuple(getattr(grad, 'shape', ())) or type(grad).__name__}")


def _detach(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach() if value.grad_fn is not None else value
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_detach(v) for v in value))
    if isinstance(value, tuple):
        return tuple(_detach(v) for v in value)
    return value


def detach_state(state: S) -> S:
    """Cut a state (a ``NamedTuple``, possibly nested) from the graph at the end of a
    truncation. Leaf tensors (a baseline's parameters) are kept as they are."""
    return _detach(state)


def segment_normalize(x: Tensor, segments: Segments, eps: float = 1e-12) -> Tensor:
    """Divide ``x`` ``(batch, coords)`` by its L2 norm over each parameter tensor of a problem."""
    if segments.count == 1:
        return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)
    sq = x.new_zeros(x.shape[0], segments.count).index_add_(1, segments.ids, x * x)
    return x / sq.sqrt().clamp_min(eps)[:, segments.ids]
