"""The read-out contract: how a learned optimizer turns its field into an update.

A read-out takes the port-Hamiltonian field and the gradient-state ``(q, q_dot)`` of every
coordinate and gives the optimizer's output:

    direction, next_q_dot = readout(field, q, q_dot)

``q`` and ``q_dot`` have shape ``(..., d)``; ``direction`` and ``next_q_dot`` have shape
``(..., 1)``. The optimizer moves the parameters by ``out_mul * direction`` and feeds
``next_q_dot`` back at the next step. Read-outs may own learned weights; they are registered
as the ``readout`` kind (``phys_l2o.registry``), the flow maps they may integrate with as the
``flow`` kind (``.flows``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn

from ..checks import positive_int


class Readout(nn.Module):
    """Base class. Subclasses take ``width`` (the feature width ``d``) and keyword options.

    Attributes:
        width: the feature width ``d`` the read-out's heads were built for.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = positive_int("width", width)

    def forward(self, field: nn.Module, q: Tensor, q_dot: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class CallCount:
    """How many times a module was called while ``count_calls`` watched it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *_: object) -> None:
        self.calls += 1


@contextmanager
def count_calls(module: nn.Module) -> Iterator[CallCount]:
    """Count the calls of ``module`` (a field: its evaluations) while the block runs, with a
    forward hook: nothing in the module changes, and no read-out or flow keeps a count.

        with count_calls(optimizer.field) as count:
            readout(field, q, q_dot)
        count.calls       # 4 for rk4
    """
    count = CallCount()
    handle = module.register_forward_hook(count)
    try:
        yield count
    finally:
        handle.remove()
