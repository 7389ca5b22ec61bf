"""Markdown tables: one row per method, with intervals, medians and paired differences.

Every table takes the methods' ``order`` (default: as given) and their display ``names``
(default: the methods' own) from its caller."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: display names of methods, by method name.
Names = Mapping[str, str]


def format_number(x: float | None) -> str:
    if x is None or x != x or x in (float("inf"), float("-inf")):
        return "diverged"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.3e}"


def interval(entry: Mapping) -> str:
    """``mean [low, high]`` of a summary or a paired difference."""
    lo, hi = entry["ci95"]
    if "median" in entry:  # a summary of losses, else a difference
        return f"{format_number(entry['mean'])} [{format_number(lo)}, {format_number(hi)}]"
    return f"{entry['mean']:+.3g} [{lo:+.3g}, {hi:+.3g}]"


def ordered(names, order: Sequence[str] | None = None) -> list[str]:
    """``names`` in ``order`` (default: as given), the others after."""
    order = list(order) if order is not None else []
    known = [n for n in order if n in names]
    return known + [n for n in names if n not in order]


def display(name: str, names: Names | None = None) -> str:
    """A method's name as tables show it: its entry in ``names`` (an oracle row: its
    method's), else itself."""
    names = names or {}
    base, sep, rest = name.partition(" (oracle epoch)")
    return names.get(base, base) + sep + rest if sep else names.get(name, name)


def method_table(methods: Mapping[str, dict], paper: Mapping[str, float] | None = None,
                 reference: str | None = None, order: Sequence[str] | None = None,
                 names: Names | None = None) -> str:
    """One row per method: # params, seeds, final loss mean [95% CI], median, the paired
    difference to ``reference`` (default: the one the entries name), wall time and field
    evaluations per step where any method has them, and the paper's number when ``paper`` is
    given."""
    rows = ordered(methods, order)
    if reference is None:  # the entries say which method their differences are to
        reference = next((methods[n]["paired_diff"]["reference"] for n in rows
                          if "reference" in methods[n].get("paired_diff", {})), None)
    many_seeds = any(methods[n].get("seeds", 1) > 1 for n in rows)
    has_nfe = any(methods[n].get("nfe") is not None for n in rows)
    has_time = any(methods[n].get("seconds") for n in rows)
    header = ["method", "# params"] + (["seeds"] if many_seeds else []) + \
        ["final loss: mean [95% CI]", "median"]
    if reference is not None:
        header.append(f"diff. to {display(reference, names)} [95% CI]")
    if has_time:
        header.append("wall time (s)")
    if has_nfe:
        header.append("NFE")
    if paper:
        header.append("paper")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in rows:
        entry = methods[name]
        loss = entry["final_loss"]
        flag = " (training diverged)" if entry.get("diverged_training") else ""
        cells = [display(name, names) + flag,
                 "-" if entry.get("params") is None else str(entry["params"])]
        if many_seeds:
            cells.append(str(entry.get("seeds", 1)))
        cells += [interval(loss), format_number(loss["median"])]
        if loss.get("diverged"):
            cells[-2] += f" ({loss['diverged']} diverged)"
        if reference is not None:
            diff = entry.get("paired_diff")
            cells.append("-" if diff is None else interval(diff))
        if has_time:
            cells.append(f"{entry.get('seconds') or 0:.1f}")
        if has_nfe:
            cells.append("-" if entry.get("nfe") is None else f"{entry['nfe']:.3g}")
        if paper:
            cells.append(format_number(paper[name]) if name in paper else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def matrix_table(targets: Mapping[str, Mapping[str, dict]],
                 order: Sequence[str] | None = None, names: Names | None = None) -> str:
    """Methods as rows, targets as columns, mean final loss [95% CI] in the cells."""
    labels = list(targets)
    rows = ordered(list(dict.fromkeys(m for t in targets.values() for m in t)), order)
    lines = ["| method | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name in rows:
        cells = [interval(targets[label][name]["final_loss"]) if name in targets[label]
                 else "-" for label in labels]
        lines.append(f"| {display(name, names)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def training_table(methods: Mapping[str, dict], order: Sequence[str] | None = None,
                   names: Names | None = None) -> str:
    """Per learned method: each seed's best epoch and validation loss, and its time."""
    lines = ["| method | seed | best epoch | best validation | skipped updates | "
             "meta-training (s) |", "|---|---|---|---|---|---|"]
    for name in ordered(methods, order):
        for row in methods[name].get("meta_training", []):
            lines.append(f"| {display(name, names)} | {row['seed']} | {row['best_epoch']} | "
                         f"{format_number(row['best_validation'])} | {row['skipped_updates']} | "
                         f"{row['seconds']:.0f} |")
    return "\n".join(lines)


def transfer_table(records: Sequence[Mapping], train_label: str,
                   order: Sequence[str] | None = None, names: Names | None = None) -> str:
    """Per learned method and seed watched during meta-training: the epoch the training task's
    validation keeps and, per watched target, its validation loss at that epoch, its own best
    epoch and the loss there."""
    rows = [r for r in records if r.get("meta_training", {}).get("monitors")]
    labels = list(dict.fromkeys(label for r in rows for label in r["meta_training"]["monitors"]))
    header = ["method", "seed", f"kept epoch ({train_label})"]
    for label in labels:
        header += [f"{label} at kept epoch", f"best {label} epoch", f"{label} there",
                   f"{label} range over epochs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in ordered(list(dict.fromkeys(r["method"] for r in rows)), order):
        for record in (r for r in rows if r["method"] == method):
            train = record["meta_training"]
            kept = train["best_epoch"]
            cells = [display(method, names), str(record["seed"]), str(kept)]
            for label in labels:
                watched = train["monitors"].get(label)
                if watched is None:
                    cells += ["-"] * 4
                    continue
                values = [v for v in watched["validation"] if v is not None]
                cells += [format_number(watched["validation"][kept]),
                          str(watched["best_epoch"]), format_number(watched["best_validation"]),
                          f"{format_number(min(values))} - {format_number(max(values))}"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
