"""Markdown tables in the layout of the paper's Tables A1-A3, with intervals and medians."""

from __future__ import annotations

from collections.abc import Mapping

from ..presets import METHOD_ORDER

NAMES = {"hnn": "HNN", "lstm": "LSTM", "adam": "Adam", "rmsprop": "RMSprop", "sgd": "SGD",
         "nag": "NAG"}


def format_number(x: float | None) -> str:
    if x is None or x != x or x in (float("inf"), float("-inf")):
        return "diverged"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.3e}"


def ordered(names) -> list[str]:
    known = [n for n in METHOD_ORDER if n in names]
    return known + sorted(n for n in names if n not in METHOD_ORDER)


def method_table(methods: Mapping[str, dict], paper: Mapping[str, float] | None = None,
                 reference: str = "hnn") -> str:
    """One row per method: # params, final-loss mean [95% CI], median, paired difference to
    ``reference``, and the paper's number when given."""
    header = ["method", "# params", "final loss: mean [95% CI]", "median",
              f"mean diff. to {NAMES.get(reference, reference)} [95% CI]"]
    if paper:
        header.append("paper")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in ordered(methods):
        entry = methods[name]
        loss = entry["final_loss"]
        lo, hi = loss["ci95"]
        params = entry.get("params")
        cells = [NAMES.get(name, name), "-" if params is None else str(params),
                 f"{format_number(loss['mean'])} [{format_number(lo)}, {format_number(hi)}]",
                 format_number(loss["median"])]
        diff = entry.get(f"paired_diff_vs_{reference}")
        cells.append("-" if diff is None else
                     f"{diff['mean']:+.3g} [{diff['ci95'][0]:+.3g}, {diff['ci95'][1]:+.3g}]")
        if paper:
            cells.append(format_number(paper.get(name)) if name in paper else "-")
        if loss.get("diverged"):
            cells[2] += f" ({loss['diverged']} diverged)"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
