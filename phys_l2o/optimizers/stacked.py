"""Many optimizers of one architecture, each with its own weights, as one program.

``Stacked`` keeps the ``Optimizer`` contract for ``M`` *members*: learned optimizers built from
one spec (the seeds of a sweep's variant), or one template with ``M`` weight sets (the
perturbed copies of an evolution-strategies population). Member ``m`` optimizes rows
``m * B .. (m + 1) * B - 1`` of ``params`` ``(M * B, coords)``; its step is the template's
``step`` run with the member's weights through ``torch.func.functional_call``, and the members
are mapped with ``torch.func.vmap``, so that a step of ``M`` members costs about one step of one
optimizer on ``M`` times the problems::

    stacked = Stacked([hnn_seed_0, hnn_seed_1, hnn_seed_2])
    losses = evaluate(stacked, task, repeat(problems, 3), steps)   # (3 * B, steps)

Built from member modules, the stacked weights are formed from the members' own parameters
(``torch.stack``, differentiable) once per truncation, so a meta-loss back-propagates into
each member's weights and each member keeps its own meta-optimizer (``meta.group``). Built
``with_weights``, the weights are fixed tensors ``(M, ...)``.

The state is a ``StackedState``: the member state's tensors, each with a leading member axis,
and the structure they fill (a ``NamedTuple`` of the template's, with slots). An optimizer whose
step ``vmap`` cannot run (a derivative inside the step, as ``ScalarPotentialMLP`` takes; an
in-place write into a fresh tensor) is stepped member by member instead (``vectorize``):
the same values, one step call per member. ``compiled()`` runs the whole vmapped step through
``torch.compile``, as ``LearnedOptimizer.compiled`` does for one optimizer.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from ..checks import positive_int
from ..registry import Spec, spec_of
from .base import CompiledOptimizer, LearnedOptimizer, apply_update, compile_available

__all__ = ["Stacked", "StackedState", "fill_state", "split_state"]

_SLOT = object()  # where a tensor of a state was taken out


def split_state(value: Any, tensors: list[Tensor]) -> Any:
    """``value`` (a state: tensors in named tuples, tuples, lists, dicts) with each tensor
    appended to ``tensors`` and replaced by a slot: the state's structure."""
    if isinstance(value, Tensor):
        tensors.append(value)
        return _SLOT
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(split_state(v, tensors) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(split_state(v, tensors) for v in value)
    if isinstance(value, dict):
        return {k: split_state(v, tensors) for k, v in value.items()}
    return value


def fill_state(structure: Any, tensors: Any) -> Any:
    """The inverse of ``split_state``: the slots of ``structure`` filled, in order, from the
    iterator ``tensors``."""
    if structure is _SLOT:
        return next(tensors)
    if isinstance(structure, tuple) and hasattr(structure, "_fields"):
        return type(structure)(*(fill_state(v, tensors) for v in structure))
    if isinstance(structure, (tuple, list)):
        return type(structure)(fill_state(v, tensors) for v in structure)
    if isinstance(structure, dict):
        return {k: fill_state(v, tensors) for k, v in structure.items()}
    return structure


class StackedState(NamedTuple):
    """The members' states: the tensors of one member's state, each stacked along a leading
    member axis ``(M, ...)``, and the structure they fill (``split_state``)."""

    tensors: tuple[Tensor, ...]
    structure: Any


class _Step(nn.Module):
    """An optimizer's ``step`` as the ``forward`` that ``functional_call`` runs."""

    def __init__(self, optimizer: nn.Module) -> None:
        super().__init__()
        self.inner = optimizer

    def forward(self, params: Tensor, grad: Tensor, state: Any) -> tuple[Tensor, Any]:
        return self.inner.step(params, grad, state)


class Stacked(nn.Module):
    """``M`` learned optimizers of one architecture stepping as one program (see the module).

    Args:
        members: learned optimizers built from one spec (their weights differ); they are
            held, not copied: their weights train in place.
        vectorize: ``True``: step through ``vmap`` (fail if it cannot); ``False``: member by
            member; ``None``: ``vmap``, member by member where it fails (with a warning).

    Raises:
        ValueError: no members, or members of different specs (the message names both).
    """

    name = "stacked"

    def __init__(self, members: Sequence[LearnedOptimizer], *,
                 vectorize: bool | None = None) -> None:
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("a stack needs at least one member")
        first = spec_of(members[0])
        for m, member in enumerate(members[1:], 1):
            if spec_of(member) != first:
                raise ValueError(f"members of a stack share one spec: member 0 is {first}, "
                                 f"member {m} is {spec_of(member)}")
        self.members = nn.ModuleList(members)
        self._setup(members[0], len(members), vectorize)
        self.fixed: dict[str, Tensor] | None = None
        self._leaves = [p for m in members for name, p in m.named_parameters()
                        if name in self.names]
        self._cache: tuple | None = None

    @classmethod
    def with_weights(cls, template: LearnedOptimizer, weights: Mapping[str, Tensor], *,
                     vectorize: bool | None = None) -> Stacked:
        """``M`` copies of ``template`` with the fixed weights ``weights``: one tensor
        ``(M, *shape)`` per trainable weight of the template, by name (``named_parameters``);
        the template's other weights are shared."""
        stacked = cls.__new__(cls)
        nn.Module.__init__(stacked)
        shapes = dict(template.named_parameters())
        sizes = {tuple(w.shape[:1]) for w in weights.values()}
        if len(sizes) != 1 or any(name not in shapes or w.shape[1:] != shapes[name].shape
                                  for name, w in weights.items()):
            raise ValueError("weights must be (members, *shape) tensors of the template's "
                             f"weights {sorted(shapes)}, all with one member count")
        stacked.members = nn.ModuleList([template])
        stacked._setup(template, next(iter(sizes))[0], vectorize)
        stacked.fixed = dict(weights)
        return stacked

    @classmethod
    def copies(cls, template: LearnedOptimizer, count: int, *,
               vectorize: bool | None = None) -> Stacked:
        """``count`` copies of ``template`` with its own weights (``with_weights`` of its
        trainable weights, expanded, not copied)."""
        return cls.with_weights(template, {
            name: p.detach().expand(count, *p.shape) for name, p in template.named_parameters()
            if p.requires_grad}, vectorize=vectorize)

    def _setup(self, template: LearnedOptimizer, count: int, vectorize: bool | None) -> None:
        self.count = positive_int("members", count)
        self.vectorize = vectorize
        # not registered as submodules: the members' weights are the stack's, held once
        object.__setattr__(self, "template", template)
        object.__setattr__(self, "stepper", _Step(template))
        self.names = [name for name, p in template.named_parameters() if p.requires_grad]
        self.compile_options = dict(getattr(template, "compile_options", {}))

    @staticmethod
    def vectorizable(optimizer: LearnedOptimizer) -> bool:
        """Whether ``vmap`` runs ``optimizer``'s step (two steps of two copies of it on a small
        problem, without meta-gradients): where it does not, a stack steps its members one by
        one and gains nothing."""
        stacked = Stacked.copies(optimizer, 2, vectorize=True)
        params = torch.linspace(-1.0, 1.0, 10, device=next(optimizer.parameters()).device)
        params = params.view(2, 5)
        try:
            with torch.no_grad():
                state = stacked.init_state(params, (3, 2))
                for _ in range(2):
                    _, state = stacked.step(params, params.flip(1), state)
        except (RuntimeError, NotImplementedError):
            return False
        return True

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"Stacked({self.count} x {type(self.template).__name__})"

    @property
    def step_scale(self) -> float:
        return float(getattr(self.template, "step_scale", 1.0))

    def num_params(self) -> int:
        """The weights of all members together."""
        return self.count * sum(p.numel() for p in self.template.parameters())

    def spec(self) -> Spec:
        """The members' spec (every member has it; their weights differ)."""
        return spec_of(self.template)

    def uncompilable_pieces(self) -> list[str]:
        return self.template.uncompilable_pieces()

    def compiled(self, *, mode: str | None = None) -> CompiledOptimizer:
        """The stack with its ``advance`` run through ``torch.compile`` (vmapped step and
        update in one compiled function; see ``LearnedOptimizer.compiled``).

        Raises:
            RuntimeError: a piece cannot be compiled, or no C++ compiler was found.
        """
        blocked = self.uncompilable_pieces()
        if blocked or not compile_available():
            self.template.compiled(mode=mode)  # raises the template's clear error
        return CompiledStack(self, mode)

    def weights(self) -> dict[str, Tensor]:
        """The stacked trainable weights, ``(M, *shape)`` by name: the fixed ones, or the
        members' own stacked (with their graph, so that meta-gradients reach each member).

        The members' are stacked once and reused while no member weight changes (their
        versions) and no backward pass has gone through them: a truncation of ``T`` steps
        stacks once, and its backward pass meets one stack per weight, not ``T``."""
        if self.fixed is not None:
            return self.fixed
        key = (torch.is_grad_enabled(), tuple(p._version for p in self._leaves))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        per_member = [dict(m.named_parameters()) for m in self.members]
        weights = {name: torch.stack([named[name] for named in per_member])
                   for name in self.names}
        if key[0] and any(w.requires_grad for w in weights.values()):
            # a backward pass frees the stack's graph: stack again before the next step
            for w in weights.values():
                if w.requires_grad:
                    w.register_hook(self._forget)
        self._cache = (key, weights)
        return weights

    def _forget(self, grad: Tensor) -> None:
        self._cache = None

    def init_state(self, params: Tensor, segments: Sequence[int]) -> StackedState:
        """Every member's first state for ``params`` ``(M * B, coords)`` (the same for all: a
        state before any step does not depend on the weights)."""
        batch = self._batch(params)
        tensors: list[Tensor] = []
        structure = split_state(self.template.init_state(params[:batch], segments), tensors)
        return StackedState(tuple(t.expand(self.count, *t.shape) for t in tensors), structure)

    def _batch(self, params: Tensor) -> int:
        if params.dim() != 2 or params.shape[0] % self.count:
            raise ValueError(f"params of {self.count} members must be (members * batch, "
                             f"coords), got {tuple(params.shape)}")
        return params.shape[0] // self.count

    def step(self, params: Tensor, grad: Tensor,
             state: StackedState) -> tuple[Tensor, StackedState]:
        return self.step_with(self.weights(), params, grad, state)

    def step_with(self, weights: dict[str, Tensor], params: Tensor, grad: Tensor,
                  state: StackedState) -> tuple[Tensor, StackedState]:
        """``step`` with the stacked weights ``weights`` (``weights()``'s)."""
        batch = self._batch(params)
        shaped = params.view(self.count, batch, -1), grad.view(self.count, batch, -1)
        weights = {f"inner.{name}": w for name, w in weights.items()}
        if self.vectorize is not False:
            try:
                update, tensors, structure = self._vmapped(weights, *shaped, state)
                return update.reshape(params.shape), StackedState(tensors, structure)
            except (RuntimeError, NotImplementedError) as error:
                if self.vectorize:
                    raise
                warnings.warn(f"vmap cannot run the step of {type(self.template).__name__} "
                              f"({str(error).splitlines()[0]}); stepping the members one by "
                              "one", RuntimeWarning, stacklevel=2)
                self.vectorize = False
        update, tensors, structure = self._looped(weights, *shaped, state)
        return update.reshape(params.shape), StackedState(tensors, structure)

    def _one(self, weights: dict[str, Tensor], params: Tensor, grad: Tensor,
             tensors: Sequence[Tensor], structure: Any) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One member's step: its update and the tensors of its next state (whose structure
        is kept in ``_structure``)."""
        state = fill_state(structure, iter(tensors))
        update, state = functional_call(self.stepper, weights, (params, grad, state))
        out: list[Tensor] = []
        self._structure = split_state(state, out)
        return update, tuple(out)

    def _vmapped(self, weights: dict[str, Tensor], params: Tensor, grad: Tensor,
                 state: StackedState) -> tuple[Tensor, tuple[Tensor, ...], Any]:
        def one(w, p, g, ts):
            return self._one(w, p, g, ts, state.structure)

        update, tensors = vmap(one)(weights, params, grad, state.tensors)
        return update, tensors, self._kept(state.structure)

    def _looped(self, weights: dict[str, Tensor], params: Tensor, grad: Tensor,
                state: StackedState) -> tuple[Tensor, tuple[Tensor, ...], Any]:
        updates, states = [], []
        for m in range(self.count):
            update, tensors = self._one({k: w[m] for k, w in weights.items()}, params[m],
                                        grad[m], [t[m] for t in state.tensors],
                                        state.structure)
            updates.append(update)
            states.append(tensors)
        return (torch.stack(updates), tuple(torch.stack(ts) for ts in zip(*states)),
                self._kept(state.structure))

    def _kept(self, structure: Any) -> Any:
        """The next state's structure: the same object when it did not change (a compiled
        step then sees one structure and compiles once)."""
        return structure if self._structure == structure else self._structure


class CompiledStack(CompiledOptimizer):
    """A ``Stacked`` optimizer whose vmapped step and update run compiled; the stacked
    weights are formed eagerly (``Stacked.weights``, reused across a truncation) and passed
    in."""

    def inputs(self) -> tuple:
        return (self.module.weights(),)

    def _eager(self, params: Tensor, grad: Tensor, state: Any, scale: float | None,
               *inputs: Any) -> tuple[Tensor, Any]:
        update, state = self.module.step_with(inputs[0], params, grad, state)
        return apply_update(params, update, self.module.step_scale if scale is None
                            else scale), state
