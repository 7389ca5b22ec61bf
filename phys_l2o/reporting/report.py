"""A sweep's reports, from its cell records: ``results.json``, ``results.md``,
``intervals.png`` and ``curves-<target>.png``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..meta.checkpoint import atomic_write
from ..meta.stats import METHOD
from .plots import plot_curves, plot_intervals
from .results import method_entries, write_json
from .tables import display, matrix_table, method_table, training_table

if TYPE_CHECKING:
    from ..sweep import Plan

#: a sweep with more targets than this also gets a matrix (methods x targets).
MATRIX_FROM = 3


def method_order(plan: Plan) -> list[str]:
    """The sweep's order: its variants, then its baselines."""
    return [v.name for v in plan.sweep.variants] + plan.sweep.baselines()


def write_reports(plan: Plan, records: list[dict], meta: dict[str, Any]) -> dict:
    """Aggregate the cell records and write every report into ``plan.out``; returns the
    contents of ``results.json``."""
    sweep, out = plan.sweep, plan.out
    order = method_order(plan)
    targets = {t.label: method_entries(records, t.label, sweep.reference)
               for t in sweep.targets}
    report = {**meta, "cell_seconds": sum(r.get("seconds", 0.0) for r in records),
              "sweep": sweep.name, "title": sweep.title,
              "reference": sweep.reference, "test_seed": sweep.test_seed,
              "confidence_interval": METHOD,
              "target_titles": {t.label: t.title or t.label for t in sweep.targets},
              "targets": targets}
    for t in sweep.targets:
        plot_curves(out / f"curves-{t.label}.png", targets[t.label], t.title or t.label, order)
    plot_intervals(out / "intervals.png", targets, sweep.title, order)
    write_json(out / "results.json", report)
    text = markdown(plan, report, order)
    atomic_write(out / "results.md", lambda tmp: Path(tmp).write_text(text))
    return report


def protocol(plan: Plan, report: dict) -> str:
    """The budget and the conditions of the numbers, in one paragraph."""
    sizes = plan.sizes
    seeds = report["seeds"]
    return (f"Budget `{plan.budget}`: meta-training for {sizes['epochs']} epochs of "
            f"{sizes['trajectories']} trajectories (meta-batch {sizes['meta_batch']}, "
            f"{sizes['steps']} steps, weights kept by the validation loss on "
            f"{sizes['validation_problems']} problems), meta-seeds "
            f"{', '.join(map(str, seeds))}; every method on the same {sizes['test_problems']} "
            f"test problems per target (test seed {report['test_seed']}), {sizes['steps']} "
            f"steps. Device {report['device']}, {report['processes']} process(es) of "
            f"{report['threads']} thread(s), torch {report['torch']}. The cells took "
            f"{report['cell_seconds']:.0f} s in all; this run took {report['seconds']:.0f} s and "
            f"reused {report['reused_cells']} cells of an earlier one.")


def markdown(plan: Plan, report: dict, order: list[str]) -> str:
    sweep = plan.sweep
    lines = [f"# {sweep.title}", ""]
    if sweep.description:
        lines += [sweep.description.strip(), ""]
    if report.get("command"):
        lines += [f"Command: `{report['command']}`", ""]
    for note in report.get("data_notes", []):
        lines += [f"Data: {note}", ""]
    lines += [protocol(plan, report), ""]
    targets = report["targets"]
    if len(targets) >= MATRIX_FROM:
        lines += ["## All targets", "", matrix_table(targets, order), ""]
    lines += ["![intervals](intervals.png)", ""]
    for t in sweep.targets:
        lines += [f"## {t.title or t.label}", "",
                  method_table(targets[t.label], t.paper or None, sweep.reference, order), "",
                  f"![curves](curves-{t.label}.png)", ""]
    learned = {m: e for m, e in next(iter(targets.values())).items() if e.get("meta_training")}
    if learned:
        lines += ["## Meta-training", "", training_table(learned, order), ""]
    reference = f"`{display(sweep.reference)}`" if sweep.reference else "none"
    lines += [f"Final loss: the loss after the last step, averaged over meta-seeds and test "
              f"problems. Intervals: {METHOD}. Paired differences are to {reference} on the "
              "same problems (negative: lower loss). Wall time: per cell (a learned optimizer: "
              "meta-training and evaluation of one seed). NFE: field evaluations per optimizer "
              "step."]
    if any(t.paper for t in sweep.targets):
        lines += ["", "The paper's column is its reported mean, from one meta-training run "
                  "and different problems per method."]
    return "\n".join(lines) + "\n"
