"""Gradient estimators: how one trajectory of training problems becomes meta-updates.

An estimator (``GradientEstimator``) is handed the optimizer to roll out with, the task, a
batch of problems and a ``MetaStep``; it optimizes the problems for the schedule's steps and
updates the learned optimizer's weights through the ``MetaStep`` as often as it likes. The
``MetaStep`` is shared by every estimator: it averages the meta-gradient across the ranks of a
data-parallel run (one all-reduce), skips a non-finite one, and steps the meta-optimizer. The
training loop (``phys_l2o.meta.train``) knows estimators only through this interface, so a new
one (evolution strategies, PES) plugs in without touching it. An estimator keeps no state of
its own between trajectories: its randomness, if any, comes from the global torch generator,
which the training state saves.

``TruncatedBPTT`` is the paper's: every ``unroll`` steps the mean over problems of the summed
losses (eq. 3) is back-propagated into the optimizer's weights, then the trajectory is
detached; the last, partial truncation gets its update too.

A truncation's window of losses is ``F(theta_{k+1}) ... F(theta_{k+T})``, each loss after an
update (``window="after"``); the original code sums the losses it computes before each update,
``F(theta_k) ... F(theta_{k+T-1})`` (``window="before"``): the first has no graph to the
optimizer (its parameters were just detached) and the truncation's last update gets no
meta-gradient from its own loss.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..optimizers.base import Optimizer, advance, detach_state
from ..parallel import Ranks
from ..tasks.base import Problems, Task
from .state import OBJECTIVES, WINDOWS, TrainState

#: the smallest loss the log-ratio objective takes the log of (a loss of 0 would be -inf).
TINY = 1e-30


def log_ratio(loss: Tensor, initial: Tensor) -> Tensor:
    """``log(loss / initial)``, each floored at ``TINY``: the log-ratio objective's term."""
    return torch.log(loss.clamp_min(TINY) / initial.clamp_min(TINY))


def all_finite(tensors: Sequence[Tensor]) -> bool:
    """Whether every value of ``tensors`` (meta-gradients) is finite, with one host
    synchronisation."""
    return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


class MetaStep:
    """One update of a training state's weights from a meta-loss or a meta-gradient.

    The meta-gradient is averaged across ``ranks`` (identical on every rank from there on); a
    non-finite meta-loss (on any rank) or meta-gradient skips the update and counts it in
    ``state.result.skipped_updates``. One host synchronisation per update, none per step.
    """

    def __init__(self, state: TrainState, ranks: Ranks | None = None) -> None:
        self.state, self.ranks = state, Ranks() if ranks is None else ranks

    def loss(self, meta_loss: Tensor) -> bool:
        """Back-propagate ``meta_loss`` (a scalar with its graph to the weights) and step;
        returns whether the update was made."""
        if not self.ranks.all(torch.isfinite(meta_loss)):
            return self._skip()
        self.state.meta_optimizer.zero_grad(set_to_none=True)
        meta_loss.backward()
        return self._apply()

    def gradients(self, grads: Sequence[Tensor | None]) -> bool:
        """Step with a meta-gradient estimated otherwise: one tensor (or ``None``) per weight
        of ``state.optimizer.parameters()``, in that order; returns whether the update was
        made."""
        weights = list(self.state.optimizer.parameters())
        if len(grads) != len(weights):
            raise ValueError(f"expected {len(weights)} meta-gradients, one per weight, got "
                             f"{len(grads)}")
        self.state.meta_optimizer.zero_grad(set_to_none=True)
        for weight, grad in zip(weights, grads):
            weight.grad = None if grad is None else grad.detach().clone()
        return self._apply()

    def _apply(self) -> bool:
        grads = [p.grad for p in self.state.optimizer.parameters() if p.grad is not None]
        self.ranks.average(grads)
        if not all_finite(grads):
            return self._skip()
        self.state.meta_optimizer.step()
        return True

    def _skip(self) -> bool:
        self.state.result.skipped_updates += 1
        return False


class GradientEstimator(ABC):
    """How a trajectory of training problems turns into meta-updates (see the module)."""

    @abstractmethod
    def trajectory(self, optimizer: Optimizer, task: Task, problems: Problems, steps: int,
                   meta_step: MetaStep) -> None:
        """Optimize ``problems`` for ``steps`` steps with ``optimizer`` (the learned optimizer
        or its compiled wrapper), updating its weights through ``meta_step``."""


class TruncatedBPTT(GradientEstimator):
    """Truncated backpropagation through the optimization trajectory.

    Args:
        unroll: steps per truncation; each ends in one meta-step.
        window: which losses a truncation sums: ``"after"`` each update (default) or
            ``"before"`` (the original code's window, shifted by one step).
        objective: what it sums per step: the loss (``None`` or ``"loss"``) or its log
            ratio to the problem's initial loss (``"log-ratio"``; see ``Schedule``).
    """

    def __init__(self, unroll: int, window: str = "after", objective: str | None = None) -> None:
        if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
            raise ValueError(f"meta-training needs a truncation length >= 1, got {unroll}")
        if window not in WINDOWS:
            raise ValueError(f"window must be one of {list(WINDOWS)}, got {window!r}")
        if objective not in (None, *OBJECTIVES):
            raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}")
        self.unroll, self.window, self.objective = unroll, window, objective

    def __repr__(self) -> str:
        return (f"TruncatedBPTT(unroll={self.unroll}, window={self.window!r}, "
                f"objective={self.objective!r})")

    def trajectory(self, optimizer: Optimizer, task: Task, problems: Problems, steps: int,
                   meta_step: MetaStep) -> None:
        truncated_rollout(optimizer, task, problems, steps, self.unroll, meta_step.loss,
                          window=self.window, objective=self.objective)


def truncated_rollout(optimizer: Optimizer, task: Task, problems: Problems, steps: int,
                      unroll: int, meta_step: Callable[[Tensor], bool], *,
                      window: str = "after", scale: float | None = None,
                      objective: str | None = None, members: int = 1) -> Tensor:
    """Run ``steps`` steps, handing each truncation's meta-loss to ``meta_step``.

    Each truncation of ``unroll`` steps (the last may be shorter) sums, over its steps, the
    mean loss over problems (eq. 3; with ``objective="log-ratio"`` the mean of
    ``log(loss / initial loss)``, the initial loss a constant), hands it to ``meta_step``
    with its graph, then detaches parameters and optimizer state. ``meta_step`` returns
    ``False`` to stop the run early (a diverged meta-loss).

    With ``members > 1`` (a ``Stacked`` optimizer, whose member ``m`` optimizes the ``m``-th
    block of the problems) the meta-loss is a vector ``(members,)``: each member's own, the
    mean over its block.

    Returns:
        The detached losses ``(batch, steps)`` reached: ``F(theta_1) ... F(theta_t)``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if unroll is None or unroll < 1:
        raise ValueError(f"meta-training needs a truncation length >= 1, got {unroll}")
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {list(WINDOWS)}, got {window!r}")
    params = task.init_params(problems)
    state = optimizer.init_state(params, task.segments)
    loss, grad = task.loss_and_grad(params, problems, 0)
    initial = loss.detach() if objective == "log-ratio" else None
    curve = []
    total: Tensor | None = None
    for t in range(1, steps + 1):
        before = loss
        params, state = advance(optimizer, params, grad, state, scale)
        loss, grad = task.loss_and_grad(params, problems, t)
        curve.append(loss.detach())
        term = loss if window == "after" else before
        if initial is not None:
            term = log_ratio(term, initial)
        term = term.mean() if members == 1 else term.view(members, -1).mean(1)
        total = term if total is None else total + term
        if t % unroll == 0 or t == steps:
            if not meta_step(total):
                break
            total = None
            params, state, loss = params.detach(), detach_state(state), loss.detach()
    return torch.stack(curve, dim=1)
