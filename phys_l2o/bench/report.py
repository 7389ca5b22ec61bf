"""Scoring a suite's cells and writing what a reader looks at: ``results.json`` (every number),
``results.md`` (the tables) and ``profile.png`` (the performance profiles).

Per task, each method's final training loss over the evaluation seeds is scored as
``ln(loss / tuned reference)`` against the tuned reference's mean log loss (``scores``); a
diverged run is scored, never dropped. Over tasks, the interquartile mean with a stratified
bootstrap interval, the tasks on which a method beats the tuned reference, and its diverged
runs. The meta-seeds of a learned variant (the cells of a sweep) are also compared at the level
of seeds (``seed_level``): the bootstrap resamples evaluation problems, not meta-trainings, so
a decision between variants rests on their spread over meta-seeds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..meta.stats import seed_comparison
from ..reporting.plots import plot_profiles
from ..reporting.results import write_json
from .run import Method, scored
from .scores import METHOD, aggregate, normalize, performance_profile, wins
from .suite import Suite

#: display names of the baselines as the suite runs them.
BASELINE_NAMES = {"adam": "Adam (tuned)", "sgd": "SGD+momentum (tuned)",
                  "rmsprop": "RMSprop (tuned)", "nag": "Nesterov (tuned)"}
#: how a score is defined, in words, for reports.
SCORE = ("score = ln(final training loss / tuned Adam's), per seed, against tuned Adam's mean "
         "log loss on the same task (0: as good as tuned Adam; -0.69: half its loss; lower is "
         "better); a diverged run is scored at its initial loss or the largest finite loss it "
         "reached, whichever is larger")


def display_name(method: Method) -> str:
    if method.kind == "tuned":
        return BASELINE_NAMES.get(method.name, f"{method.name} (tuned)")
    if method.kind == "untuned":
        return f"{method.name} (untuned)"
    return method.name


def score_methods(suite: Suite, methods: Sequence[Method],
                  cells: Mapping[str, Mapping[str, dict]]) -> dict[str, dict[str, Any]]:
    """Each method's scores ``(seeds, tasks)`` on training and held-out losses, with their
    aggregates, wins and divergences, and per task its mean score and losses."""
    tasks = [t.name for t in suite.tasks]
    ref = suite.reference
    held_tasks = [t for t in tasks if "heldout" in cells[t][ref]]
    out = {}
    for method in methods:
        per_task, train, held = {}, [], []
        for t in tasks:
            record = cells[t][method.name]
            score = normalize(scored(record), scored(cells[t][ref]))
            train.append(score)
            entry = {"score": float(score.mean()), "scores": score.tolist(),
                     "initial": float(np.mean(record["initial"])),
                     "final": float(np.nanmean(np.asarray(record["final"], dtype=float)))
                     if not all(record["diverged"]) else None,
                     "diverged": int(sum(record["diverged"])), "seconds": record["seconds"]}
            if t in held_tasks:
                held_score = normalize(scored(record, "heldout"),
                                              scored(cells[t][ref], "heldout"))
                held.append(held_score)
                entry.update(heldout_score=float(held_score.mean()),
                             heldout=float(np.nanmean(np.asarray(record["heldout"],
                                                                 dtype=float)))
                             if not all(record["diverged"]) else None)
            per_task[t] = entry
        matrix = np.stack(train, axis=1)
        out[method.name] = {
            "kind": method.kind, "display": display_name(method), "source": method.source,
            "sha256": method.sha256, "spec": method.spec, "group": method.group,
            "tasks": per_task,
            "train": aggregate(matrix),
            "heldout": aggregate(np.stack(held, axis=1)) if held else None,
            "heldout_tasks": held_tasks,
            "wins": None if method.name == ref and method.kind == "tuned" else
            wins(matrix),
            "diverged": int(sum(e["diverged"] for e in per_task.values())),
            "runs": int(matrix.size)}
    return out


#: how variants are compared over meta-seeds, in words, for reports.
SEED_LEVEL = ("each meta-seed's IQM score (training loss) is one value; a difference of two "
              "variants' means has a t-interval over meta-seeds (Welch's; against a baseline, "
              "a one-sample interval), `k/n`: of the seed pairs, how many have the first "
              "lower, and a rank test over seeds (Mann-Whitney U; Wilcoxon's signed-rank "
              "against a baseline); a direction is called only when the interval excludes 0 "
              "and the rank test agrees (p < 0.05, or every pair agrees where the seeds are "
              "too few for p < 0.05), and one run never decides")


def seed_level(methods: Mapping[str, dict]) -> dict[str, Any]:
    """The learned methods (scored by ``score_methods``) grouped by variant, each variant's IQM
    score per meta-seed with the mean's t-interval, and ``seed_comparison`` of every variant
    of several meta-seeds against every baseline and every other such variant."""
    members: dict[str, list[str]] = {}
    for name, m in methods.items():
        if m["kind"] == "learned":
            members.setdefault(m.get("group") or name, []).append(name)
    groups = {}
    for group, names in members.items():
        values = [methods[n]["train"]["iqm"] for n in names]
        mean = seed_comparison(values, 0.0)  # against 0: the mean and its t-interval
        groups[group] = {"members": names, "iqm": values, "mean": mean["difference"],
                         "ci95": mean["ci95"],
                         "diverged": int(sum(methods[n]["diverged"] for n in names)),
                         "runs": int(sum(methods[n]["runs"] for n in names))}
    baselines = {m["display"]: m["train"]["iqm"] for m in methods.values()
                 if m["kind"] != "learned"}
    comparisons = []
    names = [g for g in groups if len(groups[g]["members"]) > 1]  # one run decides nothing
    for k, group in enumerate(names):
        others = list(baselines.items())  # a number: no meta-seeds
        others += [(g, groups[g]["iqm"]) for g in names[k + 1:]]
        for other, values in others:
            comparisons.append({"a": group, "b": other,
                                **seed_comparison(groups[group]["iqm"], values)})
    return {"groups": groups, "comparisons": comparisons, "method": SEED_LEVEL}


def seed_level_markdown(level: Mapping[str, Any]) -> str:
    """The meta-seed tables of ``seed_level``."""
    lines = ["| variant | meta-seeds | IQM score per meta-seed | mean [95% t-interval] "
             "| diverged runs |", "|---|---|---|---|---|"]
    for group, g in level["groups"].items():
        mean = f"{g['mean']:+.2f}" + ("" if g["ci95"] is None else
                                      " [{:+.2f}, {:+.2f}]".format(*g["ci95"]))
        lines.append(f"| {group} | {len(g['members'])} | "
                     + ", ".join(f"{v:+.2f}" for v in g["iqm"])
                     + f" | {mean} | {g['diverged']} of {g['runs']} |")
    lines += ["", "| comparison | difference of means [95% t-interval] | seed pairs lower "
              "| rank test p | first is |", "|---|---|---|---|---|"]
    for c in level["comparisons"]:
        ci = "" if c["ci95"] is None else " [{:+.2f}, {:+.2f}]".format(*c["ci95"])
        p = "-" if c["p"] is None else f"{c['p']:.2g}"
        lines.append(f"| {c['a']} vs {c['b']} | {c['difference']:+.2f}{ci} | "
                     f"{c['pairs']}/{c['of']} | {p} | {c['verdict']} |")
    return "\n".join(lines)


def _cell(value: float | None, digits: str = "+.2f") -> str:
    return "diverged" if value is None else format(value, digits)


def _interval(entry: Mapping | None) -> str:
    if entry is None:
        return "-"
    lo, hi = entry["ci95"]
    return f"{entry['iqm']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def markdown(suite: Suite, methods: Mapping[str, dict], tuned: Mapping[str, dict],
             speed: Mapping[str, dict] | None = None, command: str | None = None,
             level: Mapping[str, Any] | None = None) -> str:
    """The suite's report: the aggregate table, the meta-seed tables (``level``; made from
    ``methods`` when not given), the score of each method on each task, the tuned learning
    rates, the final losses, and the step costs when measured."""
    tasks = [t.name for t in suite.tasks]
    names = list(methods)
    n = len(tasks)
    lines = [f"# Held-out suite `{suite.name}`", "",
             f"{suite.description}. Every method runs the same {suite.seeds} problems (seeds) "
             f"of each task; each baseline's learning rate is chosen per task from "
             f"{len(suite.grid)} values ({', '.join(f'{v:g}' for v in suite.grid)}) on "
             f"{suite.tuning_seeds} other problems. {SCORE}. Intervals: {METHOD}.", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += ["| method | IQM score, training loss [95% CI] | IQM score, held-out loss [95% CI] "
              "| beats tuned Adam on | diverged runs |", "|---|---|---|---|---|"]
    for name in names:
        m = methods[name]
        wins = "(the reference)" if m["wins"] is None else f"{m['wins']} of {n} tasks"
        lines.append(f"| {m['display']} | {_interval(m['train'])} | {_interval(m['heldout'])} "
                     f"| {wins} | {m['diverged']} of {m['runs']} |")
    level = seed_level(methods) if level is None else level
    if level["groups"]:
        lines += ["", "## Meta-seeds", "", f"Variants compared at the level of meta-seeds: "
                  f"{SEED_LEVEL}.", "", seed_level_markdown(level)]
    lines += ["", "## Score per task", "",
              "Mean score over the seeds (negative: better than tuned Adam; `(k div.)`: k of "
              f"the {suite.seeds} runs diverged).", "",
              "| task | steps | " + " | ".join(methods[n]["display"] for n in names) + " |",
              "|---|---|" + "---|" * len(names)]
    for t in suite.tasks:
        row = []
        for name in names:
            e = methods[name]["tasks"][t.name]
            text = "0 (ref.)" if methods[name]["wins"] is None else _cell(e["score"])
            row.append(text + (f" ({e['diverged']} div.)" if e["diverged"] else ""))
        lines.append(f"| {t.name} | {t.steps} | " + " | ".join(row) + " |")
    lines += ["", "## Tuned learning rates", "",
              "Chosen on the tuning problems; `*`: at the edge of the grid.", "",
              "| task | " + " | ".join(BASELINE_NAMES.get(b, b) for b in suite.baselines)
              + " |", "|---|" + "---|" * len(suite.baselines)]
    for t in tasks:
        lines.append(f"| {t} | " + " | ".join(
            f"{tuned[t][b]['lr']:g}" + ("*" if tuned[t][b]["at_grid_edge"] else "")
            for b in suite.baselines) + " |")
    lines += ["", "## Final losses", "",
              "Mean over the seeds that did not diverge: training loss / held-out loss (the "
              "training data's loss, up to 2,048 examples; held-out data where the task has "
              "it).", "",
              "| task | " + " | ".join(methods[n]["display"] for n in names) + " |",
              "|---|" + "---|" * len(names)]
    for t in tasks:
        row = []
        for name in names:
            e = methods[name]["tasks"][t]
            text = _cell(e["final"], ".3g")
            if "heldout" in e:
                text += " / " + _cell(e["heldout"], ".3g")
            row.append(text)
        lines.append(f"| {t} | " + " | ".join(row) + " |")
    if speed:
        lines += ["", "## Step cost", "", speed_markdown(speed)]
    return "\n".join(lines) + "\n"


def speed_markdown(speed: Mapping[str, dict]) -> str:
    """The step-cost table (``speed.step_costs``)."""
    first = next(iter(speed.values()))
    lines = [f"One step on an MLP of {first['params']:,} parameters ({first['threads']} "
             f"thread{'s' if first['threads'] > 1 else ''}; median of {first['steps']} steps "
             "after one warm-up step).", "",
             "| optimizer | step (ms) | vs Adam | optimizer state (MB) |", "|---|---|---|---|"]
    adam = speed.get("Adam", {}).get("step_ms")
    for name, entry in speed.items():
        ratio = f"{entry['step_ms'] / adam:.1f}x" if adam else "-"
        lines.append(f"| {name} | {entry['step_ms']:.1f} | {ratio} | "
                     f"{entry['state_bytes'] / 2**20:.1f} |")
    return "\n".join(lines)


def write_report(out: str | os.PathLike, suite: Suite, methods: Sequence[Method],
                 outcome: Mapping[str, Any], *, speed: Mapping[str, dict] | None = None,
                 provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Score the outcome of ``run.run_suite`` and write ``results.json``, ``results.md`` and
    ``profile.png`` into ``out``; returns the results."""
    out = Path(out)
    scored_methods = score_methods(suite, methods, outcome["cells"])
    results = {**(provenance or {}), "suite": {
        "name": suite.name, "description": suite.description, "source": suite.source,
        "seeds": suite.seeds, "tuning_seeds": suite.tuning_seeds, "grid": list(suite.grid),
        "baselines": list(suite.baselines), "reference": suite.reference,
        "tasks": {t.name: {"spec": t.spec, "steps": t.steps} for t in suite.tasks}},
        "score": SCORE, "intervals": METHOD, "tuned": outcome["tuned"],
        "methods": scored_methods, "seed_level": seed_level(scored_methods),
        "speed": dict(speed) if speed else None}
    write_json(out / "results.json", results)
    (out / "results.md").write_text(markdown(suite, scored_methods, outcome["tuned"], speed,
                                             (provenance or {}).get("command"),
                                             results["seed_level"]))
    every = np.concatenate([np.ravel(m["tasks"][t]["scores"]) for m in scored_methods.values()
                            for t in m["tasks"]])
    low, high = np.percentile(every, [1, 95])  # the axis leaves out the farthest runs
    taus = np.linspace(min(-1.0, float(low)), max(1.0, float(high)), 201)
    profiles = {m["display"]: performance_profile(np.array(
        [m["tasks"][t]["scores"] for t in m["tasks"]]).T, taus)
        for m in scored_methods.values()}
    plot_profiles(out / "profile.png", profiles, taus,
                  f"{suite.name}: {len(suite.tasks)} tasks x {suite.seeds} seeds")
    return results
