"""Random reparametrizations of a task, for meta-training over a distribution of tasks (the
task augmentation of Celo; Moudgil et al. 2025).

:class:`AugmentedTask` wraps any task. Each problem draws, per parameter tensor (segment) of
the wrapped task, a scale ``s`` and, for its loss, a factor ``c``, both log-uniform in their
ranges. The optimizer sees the parameters ``q = p / s`` and the loss ``c * F(s * q)``, whose
gradient is ``c * s * dF/dp``: the same problem in other units, so that a learned optimizer
cannot rely on one scale of its parameters or gradients. Random horizons (``horizon``) vary
the length of the training trajectories as well.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..registry import register
from .base import Problems, Task, build_task_part

#: the prefix of the wrapped task's problems in an augmented batch of problems.
INNER = "inner."


def log_uniform_range(name: str, value: Any) -> tuple[float, float]:
    """``value`` as ``(lo, hi)``, refused unless two positive finite numbers with
    ``lo <= hi``."""
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(not isinstance(v, bool) and isinstance(v, (int, float))
                  and math.isfinite(v) and v > 0 for v in value))
    if not ok or value[0] > value[1]:
        raise ValueError(f"{name} must be a range [lo, hi] of two positive finite numbers "
                         f"with lo <= hi, got {value!r}")
    return float(value[0]), float(value[1])


def step_range(name: str, value: Any) -> tuple[int, int]:
    """``value`` as ``(lo, hi)``, refused unless two positive integers with ``lo <= hi``."""
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(not isinstance(v, bool) and isinstance(v, int) and v >= 1 for v in value))
    if not ok or value[0] > value[1]:
        raise ValueError(f"{name} must be a range [min_steps, max_steps] of two positive "
                         f"integers with min_steps <= max_steps, got {value!r}")
    return int(value[0]), int(value[1])


def draw_log_uniform(shape: tuple[int, ...], bounds: tuple[float, float],
                     generator: torch.Generator) -> Tensor:
    """Numbers log-uniform in ``bounds``; a range of one value is that value, drawing
    nothing from ``generator``."""
    lo, hi = bounds
    if lo == hi:
        return torch.full(shape, lo)
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))).float()


@register("task", "augmented", context=("data_root", "download", "device"))
class AugmentedTask(Task):
    """A task whose problems are randomly reparametrized: ``q = p / s``, loss ``c * F(p)``.

    Each problem draws one scale ``s`` per segment of the wrapped task (``param_scale``) and
    one loss factor ``c`` (``loss_scale``), log-uniform in their ranges; a range of one value
    draws nothing. With every range ``[1, 1]`` and no horizon, the task is the wrapped one:
    the same problems, losses, gradients and random stream.

    Args:
        task: the wrapped task, a spec (or a name) or a task object (default: the
            10-dimensional quadratic); a spec is built with this task's context where the
            wrapped task takes it.
        param_scale: the range ``[lo, hi]`` of the parameter scales ``s``.
        loss_scale: the range ``[lo, hi]`` of the loss factors ``c``.
        horizon: the range ``[min_steps, max_steps]`` of a training trajectory's length;
            ``None``: every trajectory runs the schedule's steps. The trainer asks for each
            trajectory's length through :meth:`horizon_steps`.
        data_root: where the wrapped task's data are (see :class:`MNISTTask`); handed down
            only when given.
        download: handed down only when ``False`` (``True`` is every data task's default).
        device: where the wrapped task's data are loaded; handed down only when given.
    """

    def __init__(self, task: Any = "quadratic", param_scale: Sequence[float] = (1.0, 1.0),
                 loss_scale: Sequence[float] = (1.0, 1.0),
                 horizon: Sequence[int] | None = None, *,
                 data_root: str | os.PathLike | None = None,
                 download: bool = True, device: torch.device | str | None = None) -> None:
        inner = build_task_part(task, data_root=data_root, download=download, device=device)
        self.task = inner
        self.param_scale = log_uniform_range("param_scale", param_scale)
        self.loss_scale = log_uniform_range("loss_scale", loss_scale)
        self.horizon = None if horizon is None else step_range("horizon", horizon)
        self.segments = tuple(inner.segments)
        self.name = f"augmented-{inner.name}"

    def __repr__(self) -> str:
        return (f"AugmentedTask({self.task!r}, param_scale={list(self.param_scale)}, "
                f"loss_scale={list(self.loss_scale)}, horizon="
                f"{None if self.horizon is None else list(self.horizon)})")

    def describe(self) -> dict:
        """The augmentation's settings and the wrapped task's (for ``results.json``)."""
        return {"name": self.name, "coords": self.num_coords,
                "param_scale": list(self.param_scale), "loss_scale": list(self.loss_scale),
                "horizon": None if self.horizon is None else list(self.horizon),
                "task": self.task.describe()}

    def with_pool(self, pool: str) -> Task:
        """The wrapped task's ``with_pool``, augmented alike."""
        inner = self.task.with_pool(pool)
        if inner is self.task:
            return self
        return AugmentedTask(inner, self.param_scale, self.loss_scale, self.horizon)

    def horizon_steps(self, generator: torch.Generator, steps: int) -> int:
        """A training trajectory's length: uniform in ``[min_steps, min(max_steps, steps)]``
        (one draw from ``generator``), or ``steps`` without a horizon (no draw).

        Raises:
            ValueError: ``steps`` is fewer than the horizon's ``min_steps``.
        """
        if self.horizon is None:
            return steps
        lo, hi = self.horizon[0], min(self.horizon[1], steps)
        if hi < lo:
            raise ValueError(f"trajectories of {steps} steps are shorter than the horizon's "
                             f"min_steps {lo}; run more steps or lower the horizon")
        return int(torch.randint(lo, hi + 1, (), generator=generator))

    def sample(self, num_problems: int, generator: torch.Generator,
               device: torch.device | str = "cpu") -> Problems:
        """The wrapped task's problems (under keys ``"inner.*"``), then, from the same
        ``generator``, the scales ``"scales" (batch, segments)`` and the loss factors
        ``"loss_scale" (batch,)``."""
        problems = {INNER + k: v for k, v in
                    self.task.sample(num_problems, generator, device).items()}
        scales = draw_log_uniform((num_problems, len(self.segments)), self.param_scale,
                                  generator)
        factors = draw_log_uniform((num_problems,), self.loss_scale, generator)
        return {**problems, "scales": scales.to(device), "loss_scale": factors.to(device)}

    def inner_problems(self, problems: Problems) -> Problems:
        """The wrapped task's problems of an augmented batch."""
        return {k[len(INNER):]: v for k, v in problems.items() if k.startswith(INNER)}

    def coordinate_scales(self, problems: Problems, like: Tensor) -> Tensor:
        """Each problem's scale of every coordinate ``(batch, coords)``, as ``like``'s dtype."""
        segments = torch.tensor(self.segments, device=problems["scales"].device)
        scales = torch.repeat_interleave(problems["scales"], segments, dim=1)
        return scales.to(device=like.device, dtype=like.dtype)

    def init_params(self, problems: Problems) -> Tensor:
        params = self.task.init_params(self.inner_problems(problems))
        return params / self.coordinate_scales(problems, params)

    def loss(self, params: Tensor, problems: Problems, step: int) -> Tensor:
        """``c * F(s * params)``, per problem ``(batch,)``."""
        scales = self.coordinate_scales(problems, params)
        loss = self.task.loss(params * scales, self.inner_problems(problems), step)
        return problems["loss_scale"].to(loss.dtype) * loss

    def loss_and_grad(self, params: Tensor, problems: Problems, step: int) -> tuple[Tensor, Tensor]:
        """``c * F(s * params)`` (with its graph, if ``params`` has one) and its detached
        gradient ``c * s * dF/dp``, from the wrapped task's ``loss_and_grad``."""
        scales = self.coordinate_scales(problems, params)
        loss, grad = self.task.loss_and_grad(params * scales, self.inner_problems(problems), step)
        factors = problems["loss_scale"].to(loss.dtype)
        return factors * loss, factors.unsqueeze(-1) * scales * grad.detach()

    def final_losses(self, params: Tensor, problems: Problems) -> dict[str, Tensor]:
        """The wrapped task's losses at ``s * params``, without the loss factor: those of the
        original problems."""
        params = params.detach()
        return self.task.final_losses(params * self.coordinate_scales(problems, params),
                                      self.inner_problems(problems))
