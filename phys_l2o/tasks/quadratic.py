"""Random quadratics ``F(theta) = ||W theta - y||^2`` (Andrychowicz et al. 2016; Table A1).

``W`` is ``dim x dim`` and ``y`` is ``dim``, all entries standard normal, fresh per problem;
``theta_0 = 0``. The batch is one ``bmm``; the gradient ``2 W^T (W theta - y)`` is analytic.

:class:`ConditionedQuadraticTask` draws ``W`` with prescribed singular values instead, so that
every problem's Hessian ``2 W^T W`` has the same condition number.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..checks import positive_int, positive_number
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

    def describe(self) -> dict:
        """The task's settings (for ``results.json``)."""
        return {"name": self.name, "dim": self.dim}

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

    def final_losses(self, params: Tensor, problems: Problems) -> dict[str, Tensor]:
        """``{"train": F(theta)}``, the exact loss (a quadratic has no held-out data)."""
        with torch.no_grad():
            return {"train": self.loss(params.detach(), problems)}


def random_orthogonal(num: int, dim: int, generator: torch.Generator) -> Tensor:
    """``num`` random orthogonal ``dim x dim`` matrices (Haar distributed: the QR of a
    Gaussian matrix, its columns' signs fixed by ``R``'s diagonal), in float64."""
    q, r = torch.linalg.qr(torch.randn(num, dim, dim, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)


@register("task", "conditioned-quadratic")
class ConditionedQuadraticTask(QuadraticTask):
    """Random least-squares problems ``||W theta - y||^2`` whose Hessian ``2 W^T W`` has
    condition number ``condition``.

    ``W = U diag(s) V^T`` with ``U``, ``V`` random orthogonal and the singular values ``s``
    log-spaced from 1 to ``sqrt(condition)``; ``y`` is standard normal, ``theta_0 = 0``.

    Args:
        dim: parameters per problem (at least 2 unless ``condition`` is 1).
        condition: the Hessian's condition number, ``>= 1``.
    """

    def __init__(self, dim: int = 20, condition: float = 100.0) -> None:
        super().__init__(dim)
        ok = (not isinstance(condition, bool) and isinstance(condition, (int, float))
              and math.isfinite(condition) and condition >= 1)
        if not ok:
            raise ValueError(f"condition must be a finite number >= 1 (the Hessian's largest "
                             f"over its smallest eigenvalue), got {condition!r}")
        if dim == 1 and condition != 1:
            raise ValueError(f"a 1-dimensional quadratic has condition number 1, not "
                             f"{condition!r}; use dim >= 2")
        self.condition = positive_number("condition", condition)
        self.name = f"quadratic-{dim}d-cond{self.condition:g}"
        exponents = torch.linspace(0.0, 0.5 * math.log10(self.condition), dim,
                                   dtype=torch.float64)
        self.singular_values = 10.0 ** exponents

    def describe(self) -> dict:
        """The task's settings (for ``results.json``)."""
        return {"name": self.name, "dim": self.dim, "condition": self.condition}

    def sample(self, num_problems: int, generator: torch.Generator,
               device: torch.device | str = "cpu") -> Problems:
        """``W (batch, dim, dim)`` and ``y (batch, dim)``, float32."""
        positive_int("num_problems", num_problems)
        u = random_orthogonal(num_problems, self.dim, generator)
        v = random_orthogonal(num_problems, self.dim, generator)
        w = (u * self.singular_values) @ v.transpose(-2, -1)
        y = torch.randn(num_problems, self.dim, generator=generator)
        return {"W": w.float().to(device), "y": y.to(device)}
