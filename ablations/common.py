"""Shared machinery of the ablation scripts (public API of ``phys_l2o`` only).

An ablation meta-trains each *variant* (a learned optimizer built from the toolkit's pieces)
with several seeds on a training task, evaluates every trained optimizer, the LSTM and the
hand-designed baselines on the *same* test problems of each target task, and reports per
target: the mean final loss with its 95% bootstrap CI (per problem, averaged over seeds),
the paired difference to the paper's HNN with its CI, parameters, wall time and field
evaluations per step. Results go to ``<out>/<name>.md``, ``.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from phys_l2o import build  # noqa: E402
from phys_l2o.meta import (  # noqa: E402
    MetaTrainingDiverged,
    Schedule,
    evaluate,
    meta_train,
    paired_difference,
    summarize,
)
from phys_l2o.reporting import write_json  # noqa: E402
from phys_l2o.reporting.tables import format_number  # noqa: E402
from phys_l2o.seeding import derive_seed, make_generator, resolve_device  # noqa: E402

#: schedule sizes per budget. ``paper``: the paper's schedule for every variant; ``smoke``: a
#: few minutes on a CPU; ``test``: the seconds-long run of the test suite.
BUDGETS = {
    "paper": {"quadratic": {"epochs": 100, "trajectories": 20, "meta_batch": 1,
                            "validation_problems": 50, "test_problems": 100, "steps": 100},
              "mnist": {"epochs": 50, "trajectories": 20, "meta_batch": 1,
                        "validation_problems": 20, "test_problems": 100, "steps": 100},
              "seeds": 3},
    "smoke": {"quadratic": {"epochs": 1, "trajectories": 3, "meta_batch": 1,
                            "validation_problems": 8, "test_problems": 20, "steps": 50},
              "mnist": {"epochs": 1, "trajectories": 1, "meta_batch": 1,
                        "validation_problems": 2, "test_problems": 4, "steps": 20},
              "seeds": 3},
    "test": {"quadratic": {"epochs": 1, "trajectories": 1, "meta_batch": 1,
                           "validation_problems": 2, "test_problems": 6, "steps": 10},
             "mnist": {"epochs": 1, "trajectories": 1, "meta_batch": 1,
                       "validation_problems": 2, "test_problems": 4, "steps": 8},
             "seeds": 3},
}


@dataclass
class Variant:
    """A learned optimizer to meta-train: its spec and its meta-training settings."""

    name: str
    spec: dict
    unroll: int
    meta_lr: float


@dataclass
class Setting:
    """A training task, the target tasks to evaluate on, and the baselines per target."""

    name: str                                    # "quadratic" or "mnist": picks the budget
    train_task: object
    targets: dict[str, object]                   # label -> task
    baselines: dict[str, dict[str, dict]] = field(default_factory=dict)  # label -> {name: spec}


def train_and_evaluate(variant: Variant, setting: Setting, sizes: dict, steps: int, seed: int,
                       problems: dict, device) -> dict:
    """Meta-train one variant with one seed; evaluate the best weights on every target."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))  # same architecture, same start
        optimizer = build(variant.spec, "optimizer")
    schedule = Schedule(**sizes, steps=steps, unroll=variant.unroll, meta_lr=variant.meta_lr)
    start = time.perf_counter()
    diverged = False
    try:
        meta_train(optimizer, setting.train_task, schedule, seed=seed, device=device,
                   progress=False)
    except MetaTrainingDiverged:  # the optimizer holds the best weights found before
        diverged = True
    finals, curves = {}, {}
    for label, task in setting.targets.items():
        losses = evaluate(optimizer, task, problems[label], steps)
        finals[label] = losses[:, -1].double().cpu().numpy()
        curves[label] = losses.double().mean(0).cpu().numpy()
    readout = getattr(optimizer, "readout", optimizer)  # the parameter state counts its own
    return {"finals": finals, "curves": curves, "seconds": time.perf_counter() - start,
            "params": optimizer.num_params(), "nfe": getattr(readout, "nfe", None),
            "diverged_training": diverged}


def run_ablation(name: str, title: str, setting: Setting, variants: list[Variant], *,
                 budget: str, device, out: Path, reference: str = "hnn (paper)",
                 matrix: bool = False) -> dict:
    """Run every variant with every seed and the baselines; write ``<out>/<name>.{md,json,png}``."""
    seeds = list(range(BUDGETS[budget]["seeds"]))
    config = dict(BUDGETS[budget][setting.name])
    test_problems, steps = config.pop("test_problems"), config.pop("steps")
    sizes = config
    problems = {label: task.sample(test_problems, make_generator(0, f"test-{label}"), device)
                for label, task in setting.targets.items()}
    runs: dict[str, list[dict]] = {}
    bar = tqdm(total=len(variants) * len(seeds), desc=name, unit="run", disable=None)
    for variant in variants:
        for seed in seeds:
            runs.setdefault(variant.name, []).append(
                train_and_evaluate(variant, setting, sizes, steps, seed, problems,
                                   device))
            bar.update(1)
    bar.close()
    for label, task in setting.targets.items():
        for base, spec in setting.baselines.get(label, {}).items():
            start = time.perf_counter()
            losses = evaluate(build(spec, "baseline"), task, problems[label], steps)
            entry = runs.setdefault(base, [{"finals": {}, "curves": {}, "seconds": 0.0,
                                            "params": None, "nfe": None,
                                            "diverged_training": False}])[0]
            entry["finals"][label] = losses[:, -1].double().cpu().numpy()
            entry["curves"][label] = losses.double().mean(0).cpu().numpy()
            entry["seconds"] += time.perf_counter() - start
    report = aggregate(runs, list(setting.targets), reference)
    report.update({"name": name, "title": title, "budget": budget, "seeds": seeds,
                   "test_problems": test_problems, "steps": steps,
                   "device": str(device)})
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{name}.json", report)
    text = markdown(report)
    if matrix:
        text = matrix_table(report) + "\n\n" + text
    (out / f"{name}.md").write_text(text)
    plot(report, out / f"{name}.png")
    return report


def aggregate(runs: dict[str, list[dict]], labels: list[str], reference: str) -> dict:
    """Per method and target: the final loss per problem averaged over seeds, summarized."""
    targets = {}
    for label in labels:
        per_method = {}
        ref = None
        if reference in runs:
            ref = np.mean([r["finals"][label] for r in runs[reference]], axis=0)
        for method, seed_runs in runs.items():
            if label not in seed_runs[0]["finals"]:
                continue
            final = np.mean([r["finals"][label] for r in seed_runs], axis=0)
            entry = {"final_loss": summarize(final),
                     "curve": np.mean([r["curves"][label] for r in seed_runs], axis=0).tolist(),
                     "params": seed_runs[0]["params"],
                     "seconds": float(np.mean([r["seconds"] for r in seed_runs])),
                     "nfe": seed_runs[0]["nfe"], "seeds": len(seed_runs),
                     "diverged_training": sum(r["diverged_training"] for r in seed_runs)}
            if ref is not None and method != reference:
                entry["paired_diff_vs_reference"] = paired_difference(final, ref)
            per_method[method] = entry
        targets[label] = per_method
    return {"reference": reference, "targets": targets}


def markdown(report: dict) -> str:
    lines = [f"# {report['title']}", "",
             f"Budget `{report['budget']}`: {len(report['seeds'])} meta-training seeds per "
             f"variant, {report['test_problems']} test problems shared by every method, "
             f"{report['steps']} steps; device {report['device']}. Final loss per problem is "
             "averaged over seeds, then summarized over problems (mean with 95% percentile "
             f"bootstrap CI). The difference is paired with `{report['reference']}` on the "
             "same problems (negative: better than it). Wall time: meta-training plus "
             "evaluation, per seed. NFE: field evaluations per optimizer step.", ""]
    for label, methods in report["targets"].items():
        lines += [f"## {label}", "",
                  "| method | # params | final loss: mean [95% CI] | median | "
                  f"diff. to {report['reference']} [95% CI] | wall time (s) | NFE |",
                  "|---|---|---|---|---|---|---|"]
        for method, e in methods.items():
            loss, diff = e["final_loss"], e.get("paired_diff_vs_reference")
            lo, hi = loss["ci95"]
            diff_text = "-" if diff is None else (
                f"{diff['mean']:+.3g} [{diff['ci95'][0]:+.3g}, {diff['ci95'][1]:+.3g}]")
            flag = " (training diverged)" if e["diverged_training"] else ""
            lines.append(f"| {method}{flag} | {e['params'] if e['params'] is not None else '-'} "
                         f"| {format_number(loss['mean'])} "
                         f"[{format_number(lo)}, {format_number(hi)}] | "
                         f"{format_number(loss['median'])} | {diff_text} | {e['seconds']:.1f} | "
                         f"{e['nfe'] if e['nfe'] is not None else '-'} |")
        lines.append("")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """A forest plot per target: mean final loss with its 95% CI for every method."""
    labels = list(report["targets"])
    fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 0.45 *
                             max(len(m) for m in report["targets"].values()) + 1.5),
                             dpi=110, squeeze=False)
    for ax, label in zip(axes[0], labels):
        methods = report["targets"][label]
        names = list(methods)[::-1]
        means = [methods[n]["final_loss"]["mean"] for n in names]
        lo = [methods[n]["final_loss"]["ci95"][0] for n in names]
        hi = [methods[n]["final_loss"]["ci95"][1] for n in names]
        ys = np.arange(len(names))
        finite = [m is not None and math.isfinite(m) for m in means]
        for y, m, a, b, ok in zip(ys, means, lo, hi, finite):
            if ok:
                ax.errorbar(m, y, xerr=[[m - a], [b - m]], fmt="o", capsize=3,
                            color="C0" if methods[names[y]]["params"] else "C7")
        ax.set_yticks(ys, names)
        ax.set_xscale("log")
        ax.set_xlabel("final loss (mean, 95% CI)")
        ax.set_title(label)
        ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.suptitle(report["title"])
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def matrix_table(report: dict) -> str:
    """Methods as rows, target nets as columns, mean final loss [95% CI] in the cells."""
    labels = list(report["targets"])
    methods = list(report["targets"][labels[0]])
    lines = [f"# {report['title']}: matrix", "",
             "| method | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for method in methods:
        cells = []
        for label in labels:
            loss = report["targets"][label].get(method, {}).get("final_loss")
            cells.append("-" if loss is None else f"{format_number(loss['mean'])} "
                         f"[{format_number(loss['ci95'][0])}, {format_number(loss['ci95'][1])}]")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main_arguments(doc: str) -> dict:
    """Parse the options every ablation script takes."""
    parser = argparse.ArgumentParser(description=doc.strip().split("\n")[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="smoke")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/ablations"))
    parser.add_argument("--data-root", default=None,
                        help="MNIST data root (default: $PHYS_L2O_DATA, else the user cache)")
    parser.add_argument("--skip-mnist", action="store_true", help="quadratic ablations only")
    args = parser.parse_args()
    return {"budget": args.budget, "device": resolve_device(args.device), "out": args.out,
            "data_root": args.data_root, "mnist": not args.skip_mnist}


def write_index(out: Path, reports: list[dict], seconds: float) -> None:
    """``<out>/index.md``: every ablation's table and plot, with the command that made them."""
    budget = reports[0]["budget"] if reports else "?"
    lines = ["# Ablations", "",
             f"Made by `python ablations/run_all.py --budget {budget}` in {seconds:.0f} s.", ""]
    for report in reports:
        lines += [f"## {report['title']}", "", f"![{report['title']}]({report['name']}.png)", "",
                  (out / f"{report['name']}.md").read_text().split("\n", 1)[1].strip(), ""]
    (out / "index.md").write_text("\n".join(lines))
