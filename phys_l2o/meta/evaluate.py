"""Evaluation: every method runs, frozen, on the same batch of test problems; and how many
field evaluations a learned optimizer's step costs."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..integrators import count_calls
from ..optimizers.base import Optimizer
from ..tasks.base import Problems, Task, select
from .rollout import rollout

#: floats per coordinate and problem that any evaluation holds at least: the parameters, their
#: gradient, two slots of optimizer state and one temporary.
FLOATS_PER_COORDINATE = 5


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (``MemAvailable``), ``None`` where unknown
    (not Linux)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(task: Task, num_problems: int, what: str, fix: str) -> int:
    """Refuse an evaluation of ``num_problems`` problems of ``task`` on the CPU that cannot
    fit: a lower bound of its memory (one sampled problem's data, and
    ``FLOATS_PER_COORDINATE`` floats per coordinate, per problem) against the memory this
    machine has available. Cheap: it samples one problem. Returns the bound in bytes.

    Raises:
        ValueError: the bound exceeds the available memory (the message names both sizes,
            ``what`` is evaluated and ``fix`` says what to change): an input too large.
    """
    one = task.sample(1, torch.Generator().manual_seed(0), "cpu")
    data = sum(v.numel() * v.element_size() for v in one.values() if isinstance(v, Tensor))
    need = num_problems * (data + FLOATS_PER_COORDINATE * 4 * task.num_coords)
    free = available_memory()
    if free is not None and need > free:
        raise ValueError(f"{what} needs at least {need / 1e9:.1f} GB of memory and this "
                          f"machine has {free / 1e9:.1f} GB available: {fix}")
    return need


def evaluate(optimizer: Optimizer, task: Task, problems: Problems, steps: int, *,
             scale: float | None = None, return_params: bool = False,
             progress: Any = None) -> Tensor | tuple[Tensor, Tensor]:
    """Losses ``(batch, steps)`` of ``optimizer`` on ``problems`` (no meta-gradients).

    ``scale``: the scale of the updates (default: the optimizer's ``step_scale``, the
    ``out_mul`` it was trained with). ``return_params``: also return the parameters reached
    (``(losses, params)``). ``progress``: a ``tqdm`` bar advanced at every step.
    """
    was_training = getattr(optimizer, "training", None)
    if was_training:
        optimizer.eval()
    try:
        with torch.no_grad():
            return rollout(optimizer, task, problems, steps, scale=scale,
                           return_params=return_params, progress=progress)
    finally:
        if was_training:
            optimizer.train()


def field_evaluations(optimizer: Optimizer, task: Task, problems: Problems,
                      steps: int) -> int | float | None:
    """Field evaluations per step, averaged over ``steps`` steps of the first problem (eager;
    a whole number when every step took the same); ``None`` for an optimizer without a
    ``field``.

    Counted from outside by a hook on the field (``integrators.count_calls``): fixed-step
    read-outs give their constant (1 for the paper's Euler read-out, 4 for ``rk4``), adaptive
    solvers the mean of their varying counts.
    """
    module = getattr(optimizer, "module", optimizer)  # a CompiledOptimizer: its eager module
    field = getattr(module, "field", None)
    if field is None:
        return None
    first = select(problems, slice(0, 1))
    with count_calls(field) as count:
        evaluate(module, task, first, steps)
    calls = count.calls
    return calls // steps if calls % steps == 0 else calls / steps


def compare(optimizers: Mapping[str, Optimizer], task: Task, problems: Problems, steps: int, *,
            progress: bool = True) -> dict[str, dict]:
    """Evaluate each named optimizer on the same problems.

    Returns:
        ``{name: {"curves": Tensor (batch, steps), "seconds": float}}``.
    """
    out = {}
    # one bar over every step of every method: its rate and time left are those of the steps
    with tqdm(total=len(optimizers) * steps, desc="evaluate", unit="step",
              disable=not progress, dynamic_ncols=True) as bar:
        for name, optimizer in optimizers.items():
            bar.set_postfix_str(name)
            start = time.perf_counter()
            curves = evaluate(optimizer, task, problems, steps, progress=bar)
            out[name] = {"curves": curves.cpu(), "seconds": time.perf_counter() - start}
    return out
