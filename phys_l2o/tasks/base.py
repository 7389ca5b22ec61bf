"""The task contract: a family of problems, sampled and optimized as a batch.

A batch of ``B`` problems is a dict of tensors whose first axis is the problem (``Problems``);
their parameters are one tensor ``(batch, coords)``. A task gives:

    problems = task.sample(B, generator, device)
    params   = task.init_params(problems)                 # (batch, coords)
    loss, grad = task.loss_and_grad(params, problems, t)  # (batch,), (batch, coords)

The loss keeps its graph to ``params`` (meta-training differentiates through it); the
gradient is always detached (no second-order terms, as in Andrychowicz et al. 2016). At the
end of a run, ``task.final_losses(params, problems)`` gives the losses a benchmark reports.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ..registry import Spec

Problems = dict[str, Tensor]


def select(problems: Problems, index: slice | Tensor | Sequence[int]) -> Problems:
    """The sub-batch ``index`` of a batch of problems."""
    return {k: v[index] for k, v in problems.items()}


def minibatch_order(pool_size: int, steps: int, batch_size: int,
                    generator: torch.Generator) -> Tensor:
    """One problem's minibatches ``(steps + 1, batch_size)`` of indices into a pool: it walks
    through its own random permutations of the pool, a fresh one per pass."""
    needed = (steps + 1) * batch_size
    passes = -(-needed // pool_size)
    order = torch.cat([torch.randperm(pool_size, generator=generator) for _ in range(passes)])
    return order[:needed].view(steps + 1, batch_size)


def minibatch_indices(problems: Problems, step: int, task: str) -> Tensor:
    """The minibatch indices ``(batch, batch_size)`` of ``step``, refused clearly past the
    steps the problems hold."""
    batches = problems["batches"]
    if not 0 <= step < batches.shape[1]:
        raise IndexError(f"step {step} is outside these problems' {batches.shape[1] - 1} "
                         f"steps (they hold minibatches 0..{batches.shape[1] - 1}); build "
                         f"the {task} with a larger `steps`")
    return batches[:, step]


class Task:
    """Base class for batched problem families."""

    #: the task's name in reports.
    name: str = "task"
    #: sizes of the parameter tensors of one problem, packed into ``coords`` in this order.
    segments: tuple[int, ...] = ()

    @property
    def num_coords(self) -> int:
        return sum(self.segments)

    def describe(self) -> dict:
        """The task's settings (for ``results.json``); tasks with options or data say more."""
        return {"name": self.name, "coords": self.num_coords}

    def with_pool(self, pool: str) -> Task:
        """The task drawing its problems from another pool of data (``"train"`` or
        ``"test"``). A task without pools (the quadratic draws every problem afresh) is its
        own for either."""
        if pool not in ("train", "test"):
            raise ValueError(f"pool must be 'train' or 'test', got {pool!r}")
        return self

    def draw(self, generator: torch.Generator) -> Task:
        """The task one meta-training trajectory runs on: a task is its own; a distribution
        over tasks (``TaskMixture``) draws one of its tasks from ``generator``."""
        return self

    def horizon_steps(self, generator: torch.Generator, steps: int) -> int:
        """The length of one meta-training trajectory of at most ``steps`` steps: ``steps``,
        unless the task draws random horizons (``AugmentedTask``)."""
        return steps

    def components(self) -> list[Task]:
        """The tasks a trajectory may run on (each validated on its own problems): the task
        itself, or a distribution's tasks."""
        return [self]

    def sample(self, num_problems: int, generator: torch.Generator,
               device: torch.device | str = "cpu") -> Problems:
        raise NotImplementedError

    def init_params(self, problems: Problems) -> Tensor:
        raise NotImplementedError

    def loss(self, params: Tensor, problems: Problems, step: int) -> Tensor:
        """Per-problem loss ``(batch,)`` of ``params`` at optimization step ``step``."""
        raise NotImplementedError

    def loss_and_grad(self, params: Tensor, problems: Problems, step: int) -> tuple[Tensor, Tensor]:
        """The loss (with its graph, if ``params`` has one) and the detached gradient."""
        with torch.enable_grad():
            tracked = params if params.requires_grad else params.detach().requires_grad_(True)
            loss = self.loss(tracked, problems, step)
            (grad,) = torch.autograd.grad(loss.sum(), tracked, retain_graph=params.requires_grad)
        return (loss if params.requires_grad else loss.detach()), grad.detach()

    def final_losses(self, params: Tensor, problems: Problems) -> dict[str, Tensor]:
        """The losses a benchmark reports at the end of a run, detached, each ``(batch,)``.

        ``"train"``: the loss on the task's whole training data (for a task without data, its
        exact loss); ``"heldout"``: the loss on held-out data, only where the task has some.
        """
        raise NotImplementedError(f"{type(self).__qualname__} does not say which losses a "
                                  "benchmark reports: define final_losses(params, problems) "
                                  "(see Task.final_losses)")


def build_task_part(task: Any, *, data_root: str | os.PathLike | None = None,
                    download: bool = True, device: torch.device | str | None = None) -> Task:
    """A task held inside another (a wrapped task, a mixture's component): a spec (or a name)
    is built with the context the outer task was given, handed down only where given
    (``download`` only when ``False``); a task object is returned as it is.

    Raises:
        ValueError: ``task`` is neither a task spec nor a ``Task``.
    """
    from ..registry import build_part

    context: dict[str, Any] = {"data_root": data_root, "device": device}
    if download is False:
        context["download"] = False
    inner = build_part(task, "task", **{k: v for k, v in context.items() if v is not None})
    if not isinstance(inner, Task):
        raise ValueError(f"expected a task spec or a Task, got {task!r}")
    return inner


def with_steps(spec: Spec | str, steps: int) -> Spec:
    """``spec`` with ``steps`` filled in wherever a task takes a step count and the spec does
    not give one: the task itself and the tasks it holds (a mixture's ``tasks``, an augmented
    task's ``task``)."""
    from ..registry import as_spec, lookup

    spec = as_spec(spec)
    cls = lookup(spec["type"], "task")
    if "steps" in inspect.signature(cls.__init__).parameters and "steps" not in spec:
        spec["steps"] = steps
    if isinstance(spec.get("task"), (str, dict)):
        spec["task"] = with_steps(spec["task"], steps)
    if isinstance(spec.get("tasks"), list):
        spec["tasks"] = [with_steps(t, steps) if isinstance(t, (str, dict)) else t
                         for t in spec["tasks"]]
    return spec


def build_task(spec: Spec | str, steps: int, **context: Any) -> Task:
    """Build a task spec where it runs (``data_root``, ``device``), for runs of ``steps`` steps
    where the task takes a step count (MNIST precomputes its minibatch order; see
    ``with_steps``)."""
    from ..registry import build

    return build(with_steps(spec, steps), "task", **context)
