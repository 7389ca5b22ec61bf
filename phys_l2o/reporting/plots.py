"""Plots: learning curves (the paper's Figs. 1-3: mean loss per step, log scale) and
intervals (mean final loss with its 95% interval, per method and target)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..meta.checkpoint import atomic_write  # noqa: E402
from .tables import display, ordered  # noqa: E402


def plot_curves(path: str | os.PathLike, methods: Mapping[str, dict], title: str,
                order: Sequence[str] | None = None) -> None:
    """Save a log-scale plot of each method's mean loss per step to ``path`` (PNG)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name in ordered(methods, order):
        curve = methods[name]["curve"]
        style = "-" if methods[name].get("params") else "--"
        ax.plot(range(1, len(curve) + 1), curve, style, label=display(name), linewidth=1.6)
    ax.set_yscale("log")
    ax.set_xlabel("optimizee step")
    ax.set_ylabel("mean loss over test problems")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def plot_intervals(path: str | os.PathLike, targets: Mapping[str, Mapping[str, dict]],
                   title: str, order: Sequence[str] | None = None) -> None:
    """A forest plot per target: each method's mean final loss with its 95% interval (learned
    optimizers in blue, baselines in grey), log scale."""
    labels = list(targets)
    rows = max(len(m) for m in targets.values())
    fig, axes = plt.subplots(1, len(labels), figsize=(4.4 * len(labels), 0.42 * rows + 1.6),
                             dpi=110, squeeze=False)
    for ax, label in zip(axes[0], labels):
        methods = targets[label]
        names = ordered(methods, order)[::-1]
        for y, name in enumerate(names):
            loss = methods[name]["final_loss"]
            mean, (lo, hi) = loss["mean"], loss["ci95"]
            if all(v is not None and math.isfinite(v) for v in (mean, lo, hi)):
                ax.errorbar(mean, y, xerr=[[mean - lo], [hi - mean]], fmt="o", capsize=3,
                            color="C0" if methods[name].get("params") else "C7")
        ax.set_yticks(range(len(names)), [display(n) for n in names])
        ax.set_xscale("log")
        ax.set_xlabel("final loss (mean, 95% interval)")
        ax.set_title(label)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
