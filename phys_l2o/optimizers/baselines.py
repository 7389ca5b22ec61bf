"""Hand-designed baselines: PyTorch's own ``torch.optim`` classes behind the optimizer contract.

The batch of problems is one leaf tensor ``(batch, coords)``; these optimizers act
elementwise, so one ``torch.optim`` instance on it is exactly one optimizer per problem.
Registered as the ``baseline`` kind: ``adam``, ``rmsprop``, ``sgd`` (SGD with momentum 0.9)
and ``nag`` (SGD with Nesterov momentum 0.9), as in the paper:

    build({"type": "adam", "lr": 0.1})
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..checks import positive_number
from ..registry import Spec, register, spec_of
from .base import check_init, check_step


class BaselineState(NamedTuple):
    """The ``torch.optim`` instance and the leaf tensor ``(batch, coords)`` it steps."""

    leaf: Tensor
    optim: torch.optim.Optimizer


class TorchOptimizer:
    """A ``torch.optim`` optimizer with the optimizer contract (no meta-trained weights).

    Subclasses set ``torch_class``, its fixed ``defaults`` and a ``default_lr``, and are
    registered.

    Args:
        lr: learning rate, positive and finite; ``None`` is the class's ``default_lr``.
        **kwargs: further ``torch.optim`` arguments (override the fixed defaults).
    """

    name: str = "torch"
    torch_class: type[torch.optim.Optimizer] = torch.optim.SGD
    #: arguments of ``torch_class`` that define the baseline (e.g. the momentum of ``sgd``).
    defaults: dict[str, Any] = {}
    #: the learning rate when none is given (``torch.optim``'s own default).
    default_lr: float = 0.001

    def __init__(self, lr: float | None = None, **kwargs: Any) -> None:
        self.lr = positive_number("the learning rate", self.default_lr if lr is None else lr)
        self.kwargs = {**self.defaults, **kwargs}
        try:  # refuse an unknown option now, not at the first step
            self.torch_class([torch.zeros(1, requires_grad=True)], lr=self.lr, **self.kwargs)
        except (TypeError, ValueError) as error:
            raise ValueError(f"bad options for the {self.name!r} baseline: {error}") from error

    #: updates are whole steps: ``advance`` applies them at scale 1.
    step_scale = 1.0

    def num_params(self) -> None:
        return None

    def spec(self) -> Spec:
        return spec_of(self)

    def init_state(self, params: Tensor, segments: Sequence[int]) -> BaselineState:
        check_init(params, segments)
        leaf = params.detach().clone().requires_grad_(True)
        return BaselineState(leaf, self.torch_class([leaf], lr=self.lr, **self.kwargs))

    @torch.no_grad()
    def step(self, params: Tensor, grad: Tensor,
             state: BaselineState) -> tuple[Tensor, BaselineState]:
        check_step(params, grad)
        state.leaf.copy_(params)
        state.leaf.grad = grad.detach()
        state.optim.step()
        return state.leaf.detach() - params, state

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"{type(self).__name__}(lr={self.lr}{options})"


@register("baseline", "adam")
class AdamBaseline(TorchOptimizer):
    """``torch.optim.Adam``."""

    name, torch_class, default_lr = "adam", torch.optim.Adam, 0.001


@register("baseline", "rmsprop")
class RMSpropBaseline(TorchOptimizer):
    """``torch.optim.RMSprop``."""

    name, torch_class, default_lr = "rmsprop", torch.optim.RMSprop, 0.01


@register("baseline", "sgd")
class SGDBaseline(TorchOptimizer):
    """``torch.optim.SGD`` with momentum 0.9 (the paper's "SGD")."""

    name, torch_class, default_lr = "sgd", torch.optim.SGD, 0.01
    defaults = {"momentum": 0.9}


@register("baseline", "nag")
class NAGBaseline(TorchOptimizer):
    """``torch.optim.SGD`` with Nesterov momentum 0.9 (the paper's "NAG")."""

    name, torch_class, default_lr = "nag", torch.optim.SGD, 0.01
    defaults = {"momentum": 0.9, "nesterov": True}
