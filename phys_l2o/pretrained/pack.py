"""Make the package's pretrained weights from the output folders of ``phys-l2o reproduce``.

    phys-l2o pack --commit REV RUN_DIR [RUN_DIR ...]

For each learned optimizer of each run (its first meta-seed's checkpoint in the run folder),
writes ``<name>-<task>.pt`` here (the spec and the best weights) and its manifest entry: the command
that made it (its data folder written ``DIR``, its output folder ``runs/<task>``), the commit,
the torch threads it ran with, the seed and budget,
the schedule, the validation loss, and its rows of the run's test tables.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from ..experiments.folder import RunFolder
from ..experiments.paper import target_key
from ..meta.checkpoint import load_checkpoint, save_checkpoint

HERE = Path(__file__).resolve().parent


def public_command(command: str, task: str) -> str:
    """The command with its local folders replaced: ``--data-root DIR``,
    ``--out runs/<task>``."""
    words = shlex.split(command)
    for i, word in enumerate(words[:-1]):
        if word == "--data-root":
            words[i + 1] = "DIR"
        elif word == "--out":
            words[i + 1] = f"runs/{task}"
    return shlex.join(words)


def test_rows(results: dict, name: str) -> dict[str, dict]:
    """The optimizer's final-loss summary on each evaluation target of a run, keyed as
    ``phys_l2o.experiments.paper.paper_targets`` is."""
    task = results["sweep"].removeprefix("paper-")
    return {target_key(task, label): methods[name]["final_loss"]
            for label, methods in results["targets"].items()}


def pack(run: str | os.PathLike, commit: str, threads: int | None, manifest: dict,
         into: Path = HERE) -> None:
    """Write the learned optimizers of the run folder ``run`` into ``into`` and their entries
    into ``manifest`` (the ``optimizers`` table of ``manifest.json``)."""
    folder = RunFolder(run)
    results = folder.read_results()
    task = results["sweep"].removeprefix("paper-")
    first = next(iter(results["targets"].values()))
    for method, entry in first.items():
        if not entry.get("meta_training"):
            continue  # a baseline
        seed = entry["meta_training"][0]["seed"]
        optimizer, meta = load_checkpoint(folder.checkpoint(method, seed))
        name = f"{method}-{task}"
        entry = {
            "file": f"{name}.pt", "spec": optimizer.spec(), "params": optimizer.num_params(),
            "task": task,
            "command": public_command(results["command"], task) if results.get("command")
            else None,
            "commit": commit, "threads": threads if threads is not None else results["threads"],
            "seed": seed, "budget": results["budget"], "torch": results["torch"],
            "data": results.get("data_notes"), "schedule": meta.get("schedule"),
            "best_epoch": meta.get("best_epoch"), "validation_loss": meta.get("best_validation"),
            "test": test_rows(results, method),
            "test_problems": results["sizes"]["test_problems"], "steps": results["sizes"]["steps"],
        }
        save_checkpoint(into / entry["file"], optimizer, pretrained=name, task=task,
                        commit=commit, seed=seed, budget=results["budget"],
                        best_epoch=meta.get("best_epoch"),
                        best_validation=meta.get("best_validation"))
        manifest[name] = entry
        print(f"wrote {entry['file']} ({optimizer.num_params()} weights, validation "
              f"{entry['validation_loss']:.4g})")


def generalization_note(results: dict, name: str, untuned: str = "adam-1e-3") -> dict:
    """What the held-out suite (the ``results.json`` of a ``phys-l2o bench`` run) says about
    the shipped optimizer ``name``: its aggregate score against tuned Adam, the tasks where it
    beats Adam at lr 1e-3 (what a user types untuned), those where it raises the training
    loss, its diverged runs, and that in one sentence (``note``)."""
    method, tasks = results["methods"][name], results["methods"][name]["tasks"]
    plain = results["methods"].get(untuned, {}).get("tasks", {})
    beats = [t for t, e in tasks.items() if t in plain and e["score"] < plain[t]["score"]]
    raises = [t for t, e in tasks.items() if e["final"] is None or e["final"] > e["initial"]]
    n, (lo, hi) = len(tasks), method["train"]["ci95"]
    seeds = results["suite"]["seeds"]
    note = (f"On the held-out suite ({n} tasks it was not meta-trained on, {seeds} seeds "
            f"each) it beats Adam tuned per task on {method['wins']} of {n} tasks "
            f"(interquartile mean of ln(loss / tuned Adam's) {method['train']['iqm']:+.2f} "
            f"[{lo:+.2f}, {hi:+.2f}]); it beats Adam at lr 1e-3 on {len(beats)} "
            + (f"({', '.join(beats)})" if beats else "") + "; it raises the training loss "
            f"on {len(raises)}" + (f" ({', '.join(raises)})" if raises else "")
            + f"; {method['diverged']} of {method['runs']} runs diverged. Use it on the task "
            "it was meta-trained on; elsewhere a tuned Adam is the better choice.")
    return {"suite": results["suite"]["name"], "tasks": n, "seeds": seeds,
            "iqm": method["train"]["iqm"], "ci95": [lo, hi], "wins": method["wins"],
            "beats_untuned_adam": beats, "raises_loss": raises,
            "diverged": method["diverged"], "runs": method["runs"],
            "commit": results.get("commit"), "note": note}


def note_generalization(bench: str | os.PathLike, into: str | os.PathLike = HERE) -> dict:
    """Write each shipped optimizer's ``generalization`` entry into ``into/manifest.json``
    from a ``phys-l2o bench`` folder that scored it, when the weights it scored are the
    shipped ones (the same SHA-256); returns the manifest.

    Raises:
        ValueError: the folder scored none of the shipped optimizers' current weights.
    """
    import hashlib

    into = Path(into)
    path = into / "manifest.json"
    document = json.loads(path.read_text())
    results = json.loads((Path(bench) / "results.json").read_text())
    noted = []
    for name, entry in document["optimizers"].items():
        scored = results["methods"].get(name)
        sha = hashlib.sha256((into / entry["file"]).read_bytes()).hexdigest()
        if scored is None or scored.get("sha256") != sha:
            entry.pop("generalization", None)  # a note on other weights would mislead
            continue
        entry["generalization"] = generalization_note(results, name)
        noted.append(name)
    if not noted:
        raise ValueError(f"{bench} scored none of the shipped optimizers' weights; run "
                         f"`phys-l2o bench heldout --out {bench}` first")
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"noted the held-out scores of {', '.join(noted)} in {path}")
    return document


def pack_runs(runs: list[str | os.PathLike], commit: str, threads: int | None = None,
              into: str | os.PathLike = HERE) -> dict:
    """Pack every run of ``runs`` into the folder ``into`` and update its ``manifest.json``
    (entries of other optimizers are kept); returns the manifest."""
    into = Path(into)
    path = into / "manifest.json"
    document = json.loads(path.read_text()) if path.exists() else {"optimizers": {}}
    for run in runs:
        pack(run, commit, threads, document["optimizers"], into)
    document["optimizers"] = dict(sorted(document["optimizers"].items()))
    path.write_text(json.dumps(document, indent=2) + "\n")
    return document
