"""Learning-curve plots (the paper's Figs. 1-3): mean loss per step, log scale."""

from __future__ import annotations

import os
from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..meta.checkpoint import atomic_write  # noqa: E402
from .tables import NAMES, ordered  # noqa: E402


def plot_curves(path: str | os.PathLike, methods: Mapping[str, dict], title: str) -> None:
    """Save a log-scale plot of each method's mean loss per step to ``path`` (PNG)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name in ordered(methods):
        curve = methods[name]["curve"]
        style = "-" if methods[name].get("params") else "--"
        ax.plot(range(1, len(curve) + 1), curve, style, label=NAMES.get(name, name), linewidth=1.6)
    ax.set_yscale("log")
    ax.set_xlabel("optimizee step")
    ax.set_ylabel("mean loss over test problems")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
