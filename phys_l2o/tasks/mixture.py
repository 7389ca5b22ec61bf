"""A distribution over tasks: meta-training on several model families at once.

``TaskMixture`` holds tasks (specs or objects, with weights); each meta-training trajectory
draws one (``Task.draw``) and runs on a batch of that task's problems, so that problems of
different sizes never share a batch. It has no problems of its own: meta-training asks it for
a task, validation validates each of its tasks (``Task.components``). A mixture's tasks may
be mixtures or augmented tasks in turn.

    build({"type": "mixture", "tasks": [{"type": "mnist-mlp", "hidden": 16},
                                        {"type": "tabular", "dataset": "digits"}],
           "weights": [2, 1]}, "task")
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch

from ..registry import register
from .base import Problems, Task, build_task_part


@register("task", "mixture", context=("data_root", "download", "device"))
class TaskMixture(Task):
    """Tasks drawn at random, one per meta-training trajectory.

    Args:
        tasks: the tasks (specs, names or task objects); at least one.
        weights: their relative probabilities (default: equal), positive and finite.
        data_root: handed to the tasks that read data (see :class:`MNISTTask`).
        download: handed down only when ``False``.
        device: where the tasks load their data.
    """

    name = "mixture"

    def __init__(self, tasks: Sequence[Any] = ("quadratic",),
                 weights: Sequence[float] | None = None, *,
                 data_root: str | os.PathLike | None = None, download: bool = True,
                 device: torch.device | str | None = None) -> None:
        if isinstance(tasks, (str, dict)) or not isinstance(tasks, Sequence) or not tasks:
            raise ValueError(f"tasks must be a non-empty list of task specs, got {tasks!r}")
        self.tasks = [build_task_part(t, data_root=data_root, download=download,
                                      device=device) for t in tasks]
        if weights is None:
            weights = [1.0] * len(self.tasks)
        ok = (isinstance(weights, Sequence) and len(weights) == len(self.tasks)
              and all(not isinstance(w, bool) and isinstance(w, (int, float))
                      and math.isfinite(w) and w > 0 for w in weights))
        if not ok:
            raise ValueError(f"weights must be {len(self.tasks)} positive finite numbers, one "
                             f"per task, got {weights!r}")
        total = float(sum(weights))
        self.weights = [float(w) / total for w in weights]
        self.name = "mixture(" + ", ".join(t.name for t in self.tasks) + ")"

    def __repr__(self) -> str:
        return f"TaskMixture({self.tasks!r}, weights={self.weights})"

    def describe(self) -> dict:
        return {"name": "mixture", "weights": self.weights,
                "tasks": [t.describe() for t in self.tasks]}

    def draw(self, generator: torch.Generator) -> Task:
        """One of the tasks, with its weight's probability (then drawn from in turn)."""
        index = int(torch.multinomial(torch.tensor(self.weights, dtype=torch.float64), 1,
                                      generator=generator))
        return self.tasks[index].draw(generator)

    def components(self) -> list[Task]:
        return [c for t in self.tasks for c in t.components()]

    def with_pool(self, pool: str) -> Task:
        """Every task drawing from ``pool``."""
        return TaskMixture([t.with_pool(pool) for t in self.tasks], self.weights)

    def sample(self, num_problems: int, generator: torch.Generator,
               device: torch.device | str = "cpu") -> Problems:
        raise TypeError("a mixture is a distribution over tasks, with no problems of its own: "
                        "draw a task first (task.draw(generator)), as meta-training does")

    @property
    def segments(self) -> tuple[int, ...]:  # type: ignore[override]
        raise TypeError("a mixture's tasks have segments of their own: draw a task first "
                        "(task.draw(generator))")
