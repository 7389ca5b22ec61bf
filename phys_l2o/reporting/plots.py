"""Plots: learning curves (the paper's Figs. 1-3: mean loss per step, log scale), intervals
(mean final loss with its 95% interval, per method and target), and the validation per epoch
of meta-training next to the targets watched alongside it (transfer), and performance profiles
of a benchmark's normalized scores.

The figures are drawn on ``matplotlib.figure.Figure`` objects, without ``pyplot``: no backend is
chosen and no window opens, whatever the caller's matplotlib is set up to do. Each plot takes
the methods' ``order`` and display ``names`` from its caller."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..meta.checkpoint import atomic_write
from .tables import Names, display, ordered


def _save(fig: Figure, path: str | os.PathLike) -> None:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def plot_curves(path: str | os.PathLike, methods: Mapping[str, dict], title: str,
                order: Sequence[str] | None = None, names: Names | None = None) -> None:
    """Save a log-scale plot of each method's mean loss per step to ``path`` (PNG).

    The axis stops at 100 times the largest first-step loss: a method whose mean blows up
    beyond it leaves the plot at its top and is marked *(off the chart)* in the legend."""
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    ax = fig.subplots()
    firsts = [methods[n]["curve"][0] for n in methods
              if methods[n]["curve"] and methods[n]["curve"][0] is not None
              and math.isfinite(methods[n]["curve"][0])]
    top = 100 * max(firsts) if firsts else math.inf
    clipped = False
    for name in ordered(methods, order):
        curve = methods[name]["curve"]
        style = "-" if methods[name].get("params") else "--"
        off = any(v is None or not math.isfinite(v) or v > top for v in curve)
        clipped |= off
        ax.plot(range(1, len(curve) + 1), curve, style, linewidth=1.6,
                label=display(name, names) + (" (off the chart)" if off else ""))
    ax.set_yscale("log")
    if clipped:
        lows = [v for n in methods for v in methods[n]["curve"]
                if v is not None and math.isfinite(v) and v > 0]
        ax.set_ylim(min(lows) / 2 if lows else None, top)
    ax.set_xlabel("optimizee step")
    ax.set_ylabel("mean loss over test problems")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8 if len(methods) > 8 else None)
    _save(fig, path)


def plot_intervals(path: str | os.PathLike, targets: Mapping[str, Mapping[str, dict]],
                   title: str, order: Sequence[str] | None = None,
                   names: Names | None = None) -> None:
    """A forest plot per target: each method's mean final loss with its 95% interval (learned
    optimizers in blue, baselines in grey), log scale."""
    labels = list(targets)
    rows = max(len(m) for m in targets.values())
    fig = Figure(figsize=(4.4 * len(labels), 0.42 * rows + 1.6), dpi=110)
    axes = fig.subplots(1, len(labels), squeeze=False)
    for ax, label in zip(axes[0], labels):
        methods = targets[label]
        rows_here = ordered(methods, order)[::-1]
        finite = [(y, methods[n]) for y, n in enumerate(rows_here)
                  if all(v is not None and math.isfinite(v) for v in
                         (methods[n]["final_loss"]["mean"], *methods[n]["final_loss"]["ci95"]))]
        # a run that blew up would squash every other interval: the axis stops at 100x the
        # median of the means, and what lies beyond is marked at its edge with its value
        means = sorted(e["final_loss"]["mean"] for _, e in finite)
        right = 100 * means[len(means) // 2] if means else 1.0
        for y, entry in finite:
            loss = entry["final_loss"]
            mean, (lo, hi) = loss["mean"], loss["ci95"]
            color = "C0" if entry.get("params") else "C7"
            if mean > right:
                ax.plot(right, y, ">", color=color)
                ax.annotate(f"{mean:.2g}", (right, y), xytext=(-4, 6),
                            textcoords="offset points", ha="right", fontsize=7)
                continue
            ax.errorbar(mean, y, xerr=[[mean - lo], [min(hi, right) - mean]], fmt="o",
                        capsize=3, color=color)
        ax.set_yticks(range(len(rows_here)), [display(n, names) for n in rows_here])
        ax.set_xscale("log")
        if means:
            ax.set_xlim(min(e["final_loss"]["ci95"][0] for _, e in finite) / 1.5, right * 1.5)
        ax.set_xlabel("final loss (mean, 95% interval)")
        ax.set_title(label)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.suptitle(title)
    _save(fig, path)


def plot_transfer(path: str | os.PathLike, records: Sequence[Mapping], train_label: str,
                  order: Sequence[str] | None = None, names: Names | None = None) -> None:
    """Per learned method, each meta-seed's validation loss per epoch on the training task
    (solid) and on every watched target (dashed), log scale; a circle marks the epoch the
    training task's validation keeps, a star each watched target's own best epoch."""
    rows = [r for r in records if r.get("meta_training", {}).get("monitors")]
    methods = ordered(list(dict.fromkeys(r["method"] for r in rows)), order)
    fig = Figure(figsize=(5.2 * len(methods), 3.8), dpi=110)
    axes = fig.subplots(1, len(methods), squeeze=False)
    for ax, method in zip(axes[0], methods):
        for i, record in enumerate(r for r in rows if r["method"] == method):
            train = record["meta_training"]
            color = f"C{i}"
            series = [(train_label, train["validation"], train["best_epoch"], "-", "o")]
            series += [(label, w["validation"], w["best_epoch"], "--", "*")
                       for label, w in train["monitors"].items()]
            for label, values, best, style, mark in series:
                values = [math.nan if v is None else v for v in values]
                ax.plot(range(len(values)), values, style, color=color, linewidth=1.3,
                        label=f"seed {record['seed']}: {label}")
                if best < len(values) and math.isfinite(values[best]):
                    ax.plot(best, values[best], mark, color=color, markersize=7)
        ax.set_yscale("log")
        ax.set_xlabel("epoch (0: untrained)")
        ax.set_ylabel("validation loss (mean final loss)")
        ax.set_title(display(method, names))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, path)


def plot_profiles(path: str | os.PathLike, profiles: Mapping[str, np.ndarray], taus: np.ndarray,
                  title: str, names: Names | None = None) -> None:
    """Performance profiles: per method, the fraction of runs with a normalized score
    ``<= tau`` against ``tau`` (``profiles`` holds one fraction per ``tau``), with a dashed
    line at 0, tuned Adam's level (the reference)."""
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    ax = fig.subplots()
    taus = np.asarray(taus, dtype=np.float64)
    for name, profile in profiles.items():
        ax.plot(taus, np.asarray(profile, dtype=np.float64), linewidth=1.6,
                label=display(name, names))
    ax.axvline(0.0, color="C7", linestyle="--", linewidth=1.2, label="tuned Adam (reference)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("normalized score tau (log of loss / tuned Adam's)")
    ax.set_ylabel("fraction of runs with score <= tau")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8 if len(profiles) > 8 else None)
    _save(fig, path)
