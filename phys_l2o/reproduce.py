"""The paper's experiments: ``reproduce`` runs the paper's sweep file of a task through the
sweep runner; the helpers build the paper's optimizers and schedules for ``train``.
"""

from __future__ import annotations

import os

import torch

from .meta import Schedule
from .optimizers.base import LearnedOptimizer, compile_available
from .presets import STEPS, budget_sizes, learned_preset
from .registry import Spec, build
from .seeding import derive_seed


def paper_schedule(task: str, optimizer: str | Spec, budget: str, **overrides) -> Schedule:
    """The schedule of ``optimizer`` (a registered name or a spec) on ``task`` for ``budget``
    (``paper`` or ``smoke``): the budget's sizes, the optimizer's truncation and meta
    learning rate (the paper's, or the defaults for an optimizer the paper did not train),
    then ``overrides`` that are not ``None``."""
    name = optimizer if isinstance(optimizer, str) else optimizer.get("type")
    preset = learned_preset(task, name)
    fields = {**budget_sizes(task, budget), "steps": STEPS, "unroll": preset["unroll"],
              "meta_lr": preset["meta_lr"]}
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return Schedule(**fields)


def build_seeded(spec: Spec, seed: int, stream: str) -> LearnedOptimizer:
    """Build a learned optimizer from ``spec`` with its weights drawn from the seed's
    ``stream`` (the global random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, stream))
        return build(spec, "optimizer")


def paper_optimizer(task: str, name: str, seed: int, **overrides) -> LearnedOptimizer:
    """A freshly initialized learned optimizer with the paper's spec for ``task`` (or the
    defaults of a registered optimizer the paper did not train), options ``overrides``."""
    spec = {**learned_preset(task, name)["optimizer"],
            **{k: v for k, v in overrides.items() if v is not None}}
    return build_seeded(spec, seed, f"init-{name}")


def use_compile(compile: bool | None, budget: str, optimizers=()) -> bool:
    """``None`` (auto): compile the learned optimizers' step for the paper budget, when a C++
    compiler is there and every optimizer can be compiled; the smoke budget is too short to
    pay the compilation back."""
    if compile is not None:
        return compile
    return budget == "paper" and compile_available() and not any(
        opt.uncompilable_pieces() for opt in optimizers)


def reproduce(task_name: str, budget: str = "smoke", *, out: str | os.PathLike,
              seed: int = 0, seeds: int = 1, device: str | None = None, progress: bool = True,
              meta_batch: int | None = None, data_root: str | None = None,
              compile: bool | None = None, threads: int | None = None,
              command: str | None = None, overwrite: bool = False,
              protocol: str = "corrected",
              max_seeds: dict[str, int] | None = None) -> dict | None:
    """Run one of the paper's experiments (its sweep file, ``paper_sweep(task_name)``) end to end
    and write its reports into ``out``: meta-seeds ``seed .. seed + seeds - 1``.

    ``compile``: run the learned optimizers' steps through ``torch.compile``; ``None`` does so
    for the paper budget when a C++ compiler is available. ``protocol``: ``corrected`` (this
    project's) or ``reference`` (the original code's, see ``phys_l2o.protocols``). A run killed
    or interrupted in ``out`` continues when called again with the same options (see
    ``run_sweep``). ``max_seeds``: ``{variant: n}`` to run only the first ``n`` seeds of a
    costly variant.
    """
    from .sweep import paper_sweep, run_sweep

    return run_sweep(paper_sweep(task_name), budget, out=out,
                     seeds=list(range(seed, seed + seeds)), device=device, threads=threads,
                     data_root=data_root, compile=compile, overrides={"meta_batch": meta_batch},
                     overwrite=overwrite, progress=progress, command=command,
                     protocol=protocol, max_seeds=max_seeds)
