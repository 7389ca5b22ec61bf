"""Experiments as data: sweep files, the run folder, the runner, and the paper's experiments.

The modules, in the direction of their imports (none imports a later one):

- ``protocols``: this project's protocol and the original code's, one switch per difference;
- ``compose``: sweep files that include others, with variant defaults and bases;
- ``spec``: the sweep file format (``Sweep``, ``Target``, ``Variant``, ``Cell``, ``load_sweep``);
- ``folder``: the run folder (``RunFolder``), the one place that knows its layout;
- ``plan``: a run's budget, seeds and protocol (``make_plan``), and its schedules;
- ``training``: ``train_variant``, used by ``phys-l2o train`` and every learned cell,
  ``train_group`` (the seeds of a variant as one program), and the one compile rule
  (``use_compile``);
- ``paper``: the paper's sweeps and the presets read from them;
- ``cells``: ``Runner``, which runs a run's jobs (a cell, or a group of seeds) in a process;
- ``engines``: what hands the jobs to runners: local worker processes, or Ray tasks;
- ``report``: a sweep's reports; ``runner``: ``run_sweep`` and ``reproduce``;
- ``claims``: which of the paper's claims hold, from run folders.

The names below load on first use, so that importing the package loads no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Sweep": "spec", "SweepError": "spec", "load_sweep": "spec",
    "RunFolder": "folder", "Plan": "plan", "make_plan": "plan",
    "train_variant": "training", "use_compile": "training",
    "paper_sweep": "paper", "run_sweep": "runner", "reproduce": "runner",
}

__all__ = ["Plan", "RunFolder", "Sweep", "SweepError", "load_sweep", "make_plan", "paper_sweep",
           "reproduce", "run_sweep", "train_variant", "use_compile"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from .folder import RunFolder
    from .paper import paper_sweep
    from .plan import Plan, make_plan
    from .runner import reproduce, run_sweep
    from .spec import Sweep, SweepError, load_sweep
    from .training import train_variant, use_compile
