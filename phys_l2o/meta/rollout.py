"""The inner loop shared by evaluation and meta-training: optimize a batch of problems.

At step ``t`` the optimizer maps ``(theta_t, grad F(theta_t))`` to an update, which
``advance`` applies: ``theta_{t+1} = theta_t + scale * update``; the reported curve is
``F(theta_1) ... F(theta_steps)``. Meta-training's loop, which also hands each truncation's
meta-loss to a meta-step, is ``estimators.truncated_rollout``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..optimizers.base import Optimizer, advance
from ..tasks.base import Problems, Task

__all__ = ["rollout"]


def rollout(optimizer: Optimizer, task: Task, problems: Problems, steps: int, *,
            scale: float | None = None, return_params: bool = False,
            progress: Any = None) -> Tensor | tuple[Tensor, Tensor]:
    """Run ``steps`` optimizer steps on every problem of the batch at once.

    Args:
        optimizer: any ``Optimizer`` (learned or baseline), or a compiled wrapper.
        task: the problem family.
        problems: the batch, from ``task.sample``.
        steps: optimizee steps.
        scale: the scale of the updates (default: the optimizer's ``step_scale``).
        return_params: also return the parameters ``theta_steps`` reached.
        progress: a progress bar (``tqdm``) to advance by one at every step, or ``None``.

    Returns:
        The detached losses ``(batch, steps)``: ``F(theta_1) ... F(theta_steps)``; with
        ``return_params``, a pair ``(losses, theta_steps)``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    params = task.init_params(problems)
    state = optimizer.init_state(params, task.segments)
    _, grad = task.loss_and_grad(params, problems, 0)
    curves = None  # (batch, steps), allocated whole at the first loss: a run too long for the
    for t in range(1, steps + 1):  # memory fails at once, and no list grows step by step
        params, state = advance(optimizer, params, grad, state, scale)
        loss, grad = task.loss_and_grad(params, problems, t)
        if curves is None:
            curves = loss.new_empty(loss.shape[0], steps)
        curves[:, t - 1] = loss.detach()
        if progress is not None:
            progress.update(1)
    return (curves, params.detach()) if return_params else curves
