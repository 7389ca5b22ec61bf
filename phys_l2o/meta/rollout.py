"""The inner loop shared by meta-training and evaluation: optimize a batch of problems.

At step ``t`` the optimizer maps ``(theta_t, grad F(theta_t))`` to ``theta_{t+1}``; the
reported curve is ``F(theta_1) ... F(theta_steps)``. With ``meta_step`` given, the mean over
problems of the losses in each truncation of ``truncation`` steps (eq. 3 of the paper) is
handed to it, then parameters and optimizer state are detached. The last, partial truncation
gets its meta-step too.

A truncation's window of losses is ``F(theta_{k+1}) ... F(theta_{k+T})``, each loss after an
update (``window="after"``); the original code sums the losses it computes before each update,
``F(theta_k) ... F(theta_{k+T-1})`` (``window="before"``): the first has no graph to the
optimizer (its parameters were just detached) and the truncation's last update gets no
meta-gradient from its own loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..optimizers.base import Optimizer, detach_state
from ..tasks.base import Problems, Task

#: the truncation windows ``rollout`` knows.
WINDOWS = ("after", "before")


def rollout(optimizer: Optimizer, task: Task, problems: Problems, steps: int, *,
            truncation: int | None = None,
            meta_step: Callable[[Tensor], bool] | None = None,
            window: str = "after") -> Tensor:
    """Run ``steps`` optimizer steps on every problem of the batch at once.

    Args:
        optimizer: any ``Optimizer`` (learned or baseline).
        task: the problem family.
        problems: the batch, from ``task.sample``.
        steps: optimizee steps.
        truncation: steps per truncation (needed with ``meta_step``).
        meta_step: called with each truncation's meta-loss (a scalar with its graph); returns
            ``False`` to stop the run early (a diverged meta-loss).
        window: which losses a truncation sums: ``"after"`` each update (default) or
            ``"before"`` (the original code's window, shifted by one step).

    Returns:
        The detached losses ``(batch, steps)``: ``F(theta_1) ... F(theta_steps)``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if meta_step is not None and (truncation is None or truncation < 1):
        raise ValueError(f"meta-training needs a truncation length >= 1, got {truncation}")
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {list(WINDOWS)}, got {window!r}")
    params = task.init_params(problems)
    state = optimizer.init_state(params, task.segments)
    loss, grad = task.loss_and_grad(params, problems, 0)
    curve = []
    total: Tensor | None = None
    for t in range(1, steps + 1):
        before = loss
        params, state = optimizer.step(params, grad, state)
        loss, grad = task.loss_and_grad(params, problems, t)
        curve.append(loss.detach())
        if meta_step is None:
            continue
        term = (loss if window == "after" else before).mean()
        total = term if total is None else total + term
        if t % truncation == 0 or t == steps:
            if not meta_step(total):
                break
            total = None
            params, state, loss = params.detach(), detach_state(state), loss.detach()
    return torch.stack(curve, dim=1)
