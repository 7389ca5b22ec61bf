"""Tuning a hand-designed baseline's learning rate: a log grid, tried on problems kept apart from
the ones that are reported, and the one rule that picks from it.

The held-out suite (``bench.run.tune``) and a sweep's tuned baselines (a target's ``tuned``
list, ``experiments.runner``) both tune through ``choose``: every learning rate of the grid is
run on the same tuning problems, each gets one number (lower is better; a run that diverged
counts as infinitely bad), and the lowest wins, the smaller rate on a tie. A choice at either
end of the grid is flagged (``at_grid_edge``): the best rate may lie outside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

#: the default grid: half-decades from 1e-4 to 1 (9 values).
GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)


def check_grid(grid, where: str = "grid") -> tuple[float, ...]:
    """``grid`` as a tuple of at least two positive finite learning rates.

    Raises:
        ValueError: anything else (the message names ``where``).
    """
    values = tuple(grid) if isinstance(grid, (list, tuple)) else ()
    if len(values) < 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                  and math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{where} must list at least 2 positive learning rates, got {grid!r}")
    return tuple(float(v) for v in values)


def choose(trials: Mapping[float, float]) -> dict:
    """The learning rate of ``trials`` (``{lr: value on the tuning problems}``, lower is better;
    non-finite values, diverged runs, lose) with the lowest value.

    Returns:
        ``{"lr": chosen, "at_grid_edge": whether it is the smallest or largest rate tried,
        "tuning": {lr: value}}`` (non-finite values as ``inf``).

    Raises:
        ValueError: no trials.
    """
    if not trials:
        raise ValueError("nothing to choose from: no learning rate was tried")
    values = {float(lr): float(v) if math.isfinite(v) else math.inf for lr, v in trials.items()}
    best = min(values, key=lambda lr: (values[lr], lr))
    return {"lr": best, "at_grid_edge": best in (min(values), max(values)), "tuning": values}
