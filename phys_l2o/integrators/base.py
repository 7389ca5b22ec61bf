"""The integrator contract and its registry (one dict from name to class, as in torchdiffeq).

An integrator turns the port-Hamiltonian field and the state ``(q, q_dot)`` of every coordinate
into the optimizer's output:

    direction, next_q_dot = integrator(field, q, q_dot)

``q`` and ``q_dot`` have shape ``(..., d)``; ``direction`` and ``next_q_dot`` have shape
``(..., 1)``. The optimizer moves the parameters by ``out_mul * direction`` and feeds
``next_q_dot`` back at the next step. Integrators may own learned read-out weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn


class Integrator(nn.Module):
    """Base class. Subclasses take ``width`` (the feature width ``d``) and keyword options."""

    def __init__(self) -> None:
        super().__init__()
        #: function evaluations of the field in the last call.
        self.nfe = 0

    def forward(self, field: nn.Module, q: Tensor, q_dot: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


INTEGRATORS: dict[str, type[Integrator]] = {}


def add_to_registry(table: dict[str, type], kind: str, name: str) -> Callable[[type], type]:
    """Class decorator that adds a class to ``table`` under the unused ``name``."""

    def add(cls: type) -> type:
        if name in table:
            raise ValueError(f"a {kind} named {name!r} is already registered")
        table[name] = cls
        return cls

    return add


def register_integrator(name: str) -> Callable[[type[Integrator]], type[Integrator]]:
    """Class decorator that adds an integrator to the registry under ``name``."""
    return add_to_registry(INTEGRATORS, "integrator", name)


def make_integrator(name: str, width: int, options: Mapping[str, Any] | None = None) -> Integrator:
    """Build the integrator registered as ``name`` for feature width ``width``.

    Raises:
        ValueError: for an unknown name (the message lists the registered ones) or an option
            the integrator does not take.
    """
    if name not in INTEGRATORS:
        raise ValueError(f"unknown integrator {name!r}; choose from {sorted(INTEGRATORS)}")
    try:
        return INTEGRATORS[name](width, **dict(options or {}))
    except TypeError as error:
        raise ValueError(f"bad options for integrator {name!r}: {error}") from error
