"""Random quadratics ``F(theta) = ||W theta - y||^2`` (Andrychowicz et al. 2016; Table A1).

``W`` is ``dim x dim`` and ``y`` is ``dim``, all entries standard normal, fresh per problem;
``theta_0 = 0``. The batch is one ``bmm``; the gradient ``2 W^T (W theta - y)`` is analytic.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import positive_int
from ..registry import register
from .base import Problems, Task


@register("task", "quadratic")
class QuadraticTask(Task):
    """A batch of random ``dim``-dimensional least-squares problems (``dim = 10`` in the paper)."""

    name = "quadratic"

    def __init__(self, dim: int = 10) -> None:
        self.dim = positive_int("dim", dim)
        self.segments = (dim,)

    def sample(self, num_problems: int, generator: torch.Generator,
               device: torch.device | str = "cpu") -> Problems:
        if num_problems < 1:
            raise ValueError(f"num_problems must be >= 1, got {num_problems}")
        w = torch.randn(num_problems, self.dim, self.dim, generator=generator)
        y = torch.randn(num_problems, self.dim, generator=generator)
        return {"W": w.to(device), "y": y.to(device)}

    def init_params(self, problems: Problems) -> Tensor:
        return problems["y"].new_zeros(problems["y"].shape)

    def residual(self, params: Tensor, problems: Problems) -> Tensor:
        return torch.bmm(problems["W"], params.unsqueeze(-1)).squeeze(-1) - problems["y"]

    def loss(self, params: Tensor, problems: Problems, step: int = 0) -> Tensor:
        return self.residual(params, problems).pow(2).sum(-1)

    def loss_and_grad(self, params: Tensor, problems: Problems,
                      step: int = 0) -> tuple[Tensor, Tensor]:
        r = self.residual(params, problems)
        grad = 2.0 * torch.bmm(problems["W"].transpose(1, 2), r.detach().unsqueeze(-1)).squeeze(-1)
        return r.pow(2).sum(-1), grad
