"""A sweep's reports, from its cell records: ``results.json``, ``results.md``,
``intervals.png``, ``curves-<target>.png`` and, when targets were watched during meta-training,
``transfer.png``. Methods appear in the sweep's order, under the paper's display names."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..meta.checkpoint import atomic_write
from ..meta.stats import METHOD, compare
from ..reporting.plots import plot_curves, plot_intervals, plot_transfer
from ..reporting.results import method_entries, oracle_name, read_finals, write_json
from ..reporting.tables import (
    display,
    matrix_table,
    method_table,
    ordered,
    training_table,
    transfer_table,
)
from .paper import DISPLAY_NAMES
from .plan import Plan
from .protocols import PROTOCOL_TEXT

#: a sweep with more targets than this also gets a matrix (methods x targets).
MATRIX_FROM = 3


def method_order(plan: Plan) -> list[str]:
    """The sweep's order: its variants (each followed by its oracle row, where it has one),
    then its baselines."""
    return ([n for v in plan.sweep.variants for n in (v.name, oracle_name(v.name))]
            + plan.sweep.baselines())


def write_reports(plan: Plan, records: list[dict], meta: dict[str, Any]) -> dict:
    """Aggregate the cell records and write every report into ``plan.out``; returns the
    contents of ``results.json``."""
    sweep, folder = plan.sweep, plan.folder
    order, names = method_order(plan), DISPLAY_NAMES
    targets = {t.label: method_entries(records, t.label, sweep.reference)
               for t in sweep.targets}
    decisions = against_reference(plan, records)
    report = {**meta, "cell_seconds": sum(r.get("seconds", 0.0) for r in records),
              "protocol": plan.protocol, "reported_loss": plan.reported_loss,
              "sweep": sweep.name, "title": sweep.title,
              "reference": sweep.reference, "test_seed": sweep.test_seed,
              "confidence_interval": METHOD,
              "target_titles": {t.label: t.title or t.label for t in sweep.targets},
              "targets": targets, "against_reference": decisions,
              "transfer": transfer_rows(records)}
    for t in sweep.targets:
        plot_curves(folder.report_path(f"curves-{t.label}.png"), targets[t.label],
                    t.title or t.label, order, names)
    plot_intervals(folder.report_path("intervals.png"), targets, sweep.title, order, names)
    if watched(records):
        plot_transfer(folder.report_path("transfer.png"), records, train_label(plan), order,
                      names)
    write_json(folder.results_path, report)
    text = markdown(plan, report, order, records)
    atomic_write(folder.report_path("results.md"), lambda tmp: Path(tmp).write_text(text))
    return report


def transfer_rows(records: list[dict]) -> list[dict]:
    """Per learned cell watched during meta-training: its validation per epoch on the training
    task and on each watched target, and the epochs each would choose."""
    return [{"method": r["method"], "seed": r["seed"],
             "kept_epoch": r["meta_training"]["best_epoch"],
             "validation": r["meta_training"]["validation"],
             "monitors": r["meta_training"]["monitors"]}
            for r in records if r.get("meta_training", {}).get("monitors")]


def watched(records: list[dict]) -> bool:
    return bool(transfer_rows(records))


def train_label(plan: Plan) -> str:
    """The label of the target on the training task's net (its pool aside), else ``train``."""
    def net(spec):
        return {k: v for k, v in spec.items() if k != "pool"}

    return next((t.label for t in plan.sweep.targets if net(t.task) == net(plan.sweep.train)),
                "train")


def protocol(plan: Plan, report: dict) -> str:
    """The protocol, the budget and the conditions of the numbers, in one paragraph."""
    sizes = plan.sizes
    seeds = report["seeds"]
    return (PROTOCOL_TEXT[plan.protocol] + " "
            f"Budget `{plan.budget}`: meta-training for {sizes['epochs']} epochs of "
            f"{sizes['trajectories']} trajectories (meta-batch {sizes['meta_batch']}, "
            f"{sizes['steps']} steps, weights kept by the validation loss on "
            f"{sizes['validation_problems']} problems), meta-seeds "
            f"{', '.join(map(str, seeds))}; every method on the same {sizes['test_problems']} "
            f"test problems per target (test seed {report['test_seed']}), {sizes['steps']} "
            f"steps. Device {report['device']}, {report.get('workers', 1)} worker(s) "
            f"({report.get('engine', 'local')} engine) of {report['threads']} thread(s), torch "
            f"{report['torch']}. The cells took "
            f"{report['cell_seconds']:.0f} s in all; this run took {report['seconds']:.0f} s and "
            f"reused {report['reused_cells']} cells of an earlier one.")


def against_reference(plan: Plan, records: list[dict]) -> dict[str, dict[str, dict]]:
    """Per target, every method against the sweep's reference on the same test problems at
    both levels (``meta.stats.compare``); ``{}`` without a reference. A method whose losses
    are not all finite gets ``{"direction": "not finite"}``."""
    reference = plan.sweep.reference
    out: dict[str, dict[str, dict]] = {}
    for label, methods in read_finals(records).items() if reference else ():
        if reference not in methods:
            continue
        out[label] = {}
        for method in ordered(methods, method_order(plan)):
            if method == reference:
                continue
            try:
                out[label][method] = compare(methods[method], methods[reference])
            except ValueError:  # a seed's mean is not finite
                out[label][method] = {"direction": "not finite"}
    return out


def decisions_table(plan: Plan, decisions: dict[str, dict[str, dict]]) -> str:
    """The ``against_reference`` comparisons as a table; empty where there are none."""
    rows = []
    for label, methods in decisions.items():
        for method, c in methods.items():
            name = display(method, DISPLAY_NAMES)
            if c["direction"] == "not finite":
                rows.append(f"| {name} | {label} | - | - | - | - | a loss is not finite |")
                continue
            boot, level = c["boot"], c["seeds"]
            seeds = ("-" if level["ci95"] is None else
                     f"{level['difference']:+.3g} [{level['ci95'][0]:+.3g}, "
                     f"{level['ci95'][1]:+.3g}]")
            p = "-" if level["p"] is None else f"{level['p']:.2g}"
            points = {"lower": "**lower**", "higher": "**higher**",
                      "one run": "one run: decides nothing"}.get(c["direction"], "undecided")
            rows.append(f"| {name} | {label} | {boot['mean']:+.3g} [{boot['ci95'][0]:+.3g}, "
                        f"{boot['ci95'][1]:+.3g}] | {seeds} | {level['pairs']} of "
                        f"{level['of']} | {p} | {points} |")
    if not rows:
        return ""
    reference = display(plan.sweep.reference, DISPLAY_NAMES)
    return "\n".join([
        f"Each method minus `{reference}` on the same test problems, twice: the crossed "
        "bootstrap of the tables above, and over meta-seeds (one mean final loss per seed): a "
        "95% t-interval, the seed pairs in which the method is lower, and a rank test "
        "(Mann-Whitney; Wilcoxon against a baseline, which has no seeds). A difference is "
        "**lower** or **higher** only where both intervals exclude 0 on that side and the "
        "rank test agrees; a single meta-seed is one run and decides nothing.", "",
        "| method | target | minus it, bootstrap [95%] | over seeds [95% t] | method lower in "
        "| rank test p | points |", "|---|---|---|---|---|---|---|", *rows])


def tuning_table(plan: Plan, records: list[dict]) -> str:
    """Per tuned baseline and target: the learning rate chosen, the rate it replaces, and the
    mean final loss of every rate tried on the tuning problems; empty without tuned cells."""
    sweep = plan.sweep
    rows = []
    for record in records:
        for label, tuning in (record.get("tuning") or {}).items():
            target = next(t for t in sweep.targets if t.label == label)
            fixed = target.baselines[target.tuned[record["method"]]]["lr"]
            tried = ", ".join(f"{float(lr):g}: " + (f"{v:.3g}" if v is not None and
                                                      math.isfinite(v) else "diverged")
                              for lr, v in tuning["tuning"].items())
            chosen = f"{tuning['lr']:g}" + (" (edge of the grid)" if tuning["at_grid_edge"]
                                            else "")
            rows.append(f"| {display(record['method'], DISPLAY_NAMES)} | {label} | {chosen} | "
                        f"{fixed:g} | {tried} |")
    if not rows:
        return ""
    where = (f"of the meta-training pool ({sweep.train['pool']})" if "pool" in sweep.train
             else "drawn apart from the test problems")
    return "\n".join([
        f"Each rate of the grid was run on the same {plan.tuning_problems} tuning problems "
        f"{where}, never on the test problems; the lowest mean final loss was chosen "
        "(`diverged`: some problem's loss was not finite).", "",
        "| baseline | target | chosen lr | paper's lr | mean final loss per lr tried |",
        "|---|---|---|---|---|", *sorted(rows)])


def markdown(plan: Plan, report: dict, order: list[str], records: list[dict]) -> str:
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
        lines += ["## All targets", "", matrix_table(targets, order, DISPLAY_NAMES), ""]
    lines += ["![intervals](intervals.png)", ""]
    for t in sweep.targets:
        lines += [f"## {t.title or t.label}", "",
                  method_table(targets[t.label], t.paper or None, sweep.reference, order,
                               DISPLAY_NAMES), "",
                  f"![curves](curves-{t.label}.png)", ""]
    decided = decisions_table(plan, report["against_reference"])
    if decided:
        reference = display(sweep.reference, DISPLAY_NAMES)
        lines += [f"## Against {reference}, over test problems and over seeds", "", decided, ""]
    tuned = tuning_table(plan, records)
    if tuned:
        lines += ["## Tuned baselines", "", tuned, ""]
    learned = {m: e for m, e in next(iter(targets.values())).items() if e.get("meta_training")}
    if learned:
        lines += ["## Meta-training", "", training_table(learned, order, DISPLAY_NAMES), ""]
    if watched(records):
        label = train_label(plan)
        lines += ["## Transfer during meta-training", "",
                  f"Each learned optimizer was validated after every epoch on the {label} "
                  f"target's net and on {', '.join(sweep.monitor)}, on fixed validation "
                  f"problems. The weights kept are those of the best {label} validation; the "
                  "rows marked *oracle epoch* in the tables above evaluate instead the weights "
                  "of each watched target's own best validation epoch, a choice that needs that "
                  "target's data and is not available to the method.", "",
                  transfer_table(records, label, order, DISPLAY_NAMES), "",
                  "![transfer](transfer.png)", ""]
    reference = f"`{display(sweep.reference, DISPLAY_NAMES)}`" if sweep.reference else "none"
    final = ("the loss after the last step" if plan.reported_loss == "last" else
             "the loss before the last update (the original's reported loss)")
    lines += [f"Final loss: {final}, averaged over meta-seeds and test "
              f"problems. Intervals: {METHOD}. Paired differences are to {reference} on the "
              "same problems (negative: lower loss). Wall time: per cell (a learned optimizer: "
              "meta-training and evaluation of one seed). NFE: field evaluations per optimizer "
              "step."]
    if any(t.paper for t in sweep.targets):
        lines += ["", "The paper's column is its reported mean, from one meta-training run "
                  "and different problems per method."]
    return "\n".join(lines) + "\n"
