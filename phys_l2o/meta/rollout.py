"""The inner loop shared by meta-training and evaluation: optimize a batch of problems.

At step ``t`` the optimizer maps ``(theta_t, grad F(theta_t))`` to ``theta_{t+1}``; the
reported curve is ``F(theta_1) ... F(theta_steps)``. With ``meta_step`` given, the mean over
problems of the losses in each truncation of ``truncation`` steps (eq. 3 of the paper) is
handed to it, then parameters and optimizer state are detached. The last, partial truncation
gets its meta-step too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..optimizers.base import Optimizer, detach_state
from ..tasks.base import Problems, Task


def rollout(optimizer: Optimizer, task: Task, problems: Problems, steps: int, *,
            truncation: int | None = None,
            meta_step: Callable[[Tensor], bool] | None = None) -> Tensor:
    """Run ``steps`` optimizer steps on every problem of the batch at once.

    Args:
        optimizer: any ``Optimizer`` (learned or baseline).
        task: the problem family.
        problems: the batch, from ``task.sample``.
        steps: optimizee steps.
        truncation: steps per truncation (needed with ``meta_step``).
        meta_step: called with each truncation's meta-loss (a scalar with its graph); returns
            ``False`` to stop the run early (a diverged meta-loss).

    Returns:
        The detached losses ``(batch, steps)``: ``F(theta_1) ... F(theta_steps)``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if meta_step is not None and (truncation is None or truncation < 1):
        raise ValueError(f"meta-training needs a truncation length >= 1, got {truncation}")
    params = task.init_params(problems)
    state = optimizer.init_state(params, task.segments)
    _, grad = task.loss_and_grad(params, problems, 0)
    curve = []
    window: Tensor | None = None
    for t in range(1, steps + 1):
        params, state = optimizer.step(params, grad, state)
        loss, grad = task.loss_and_grad(params, problems, t)
        curve.append(loss.detach())
        if meta_step is None:
            continue
        window = loss.mean() if window is None else window + loss.mean()
        if t % truncation == 0 or t == steps:
            if not meta_step(window):
                break
            window = None
            params, state = params.detach(), detach_state(state)
    return torch.stack(curve, dim=1)
