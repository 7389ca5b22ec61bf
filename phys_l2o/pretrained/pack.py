"""Make the package's pretrained weights from run folders.

    phys-l2o pack --commit REV RUN_DIR [RUN_DIR ...]
    phys-l2o pack --sweep RUN_DIR --variant VARIANT --name NAME

For each learned optimizer of each ``phys-l2o reproduce`` run (its first meta-seed's checkpoint
in the run folder), writes ``<name>-<task>.pt`` here (the spec and the best weights) and its
manifest entry: the command that made it (its data folder written ``DIR``, its output folder
``runs/<task>``), the commit, the torch threads it ran with, the seed and budget, the schedule,
the validation loss, and its rows of the run's test tables.

From a sweep's run folder (``--sweep``), one variant is shipped as ``NAME``: the meta-seed with
the lowest mean log final loss on the sweep's own test targets (tasks of its training
distribution, never the held-out suite), its checkpoint copied byte for byte (so a held-out
score of that cell is a score of the shipped file), with how it was chosen and how long it
meta-trained. ``--heldout`` then writes what the held-out suite found into every entry whose
weights it scored (``generalization_note``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

import numpy as np

from ..experiments.folder import RunFolder
from ..experiments.paper import target_key
from ..meta.checkpoint import load_checkpoint, save_checkpoint
from ..reporting.results import as_losses
from . import sha256_of

HERE = Path(__file__).resolve().parent


def read_manifest(into: Path, missing_ok: bool = True) -> dict:
    """``into/manifest.json`` (an empty one where there is none and ``missing_ok``)."""
    path = into / "manifest.json"
    if missing_ok and not path.exists():
        return {"optimizers": {}}
    return json.loads(path.read_text())


def write_manifest(into: Path, document: dict) -> Path:
    """Write ``document`` as ``into/manifest.json``, its optimizers by name, each with the
    SHA-256 of its file (``load_pretrained`` checks it); returns the path."""
    document["optimizers"] = dict(sorted(document["optimizers"].items()))
    for entry in document["optimizers"].values():
        if (into / entry["file"]).is_file():
            entry["sha256"] = sha256_of(into / entry["file"])
    path = into / "manifest.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


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
            "horizon": (meta.get("schedule") or {}).get("steps"),
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


def advice(wins: int, beats_untuned: int, raises: int, diverged: int, tasks: int) -> str:
    """What a user should take from a held-out score, in one sentence: no more than it shows."""
    if diverged == 0 and raises == 0 and 2 * wins > tasks:
        return "On tasks like these it is a first choice, ahead of a tuned Adam."
    if diverged == 0 and raises == 0 and 2 * beats_untuned > tasks:
        return ("Where you cannot tune a learning rate it is a better start than Adam at lr "
                "1e-3 on tasks like these; where you can, a tuned Adam is the better choice.")
    return ("Use it on the task it was meta-trained on; elsewhere a tuned Adam is the better "
            "choice.")


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
            + f"; {method['diverged']} of {method['runs']} runs diverged. "
            + advice(method["wins"], len(beats), len(raises), method["diverged"], n))
    return {"suite": results["suite"]["name"], "tasks": n, "seeds": seeds,
            "iqm": method["train"]["iqm"], "ci95": [lo, hi], "wins": method["wins"],
            "beats_untuned_adam": beats, "raises_loss": raises,
            "diverged": method["diverged"], "runs": method["runs"],
            "commit": results.get("commit"), "note": note}


def scored_as(results: dict, name: str, weights: str | os.PathLike) -> str | None:
    """The method of a bench's ``results`` that scored the file ``weights`` (the same
    SHA-256): ``name`` itself, or another (a sweep's cell shipped as ``name``); ``None``."""
    sha = sha256_of(weights)
    scored = [m for m, e in results["methods"].items() if e.get("sha256") == sha]
    return name if name in scored else (scored[0] if scored else None)


def note_generalization(bench: str | os.PathLike, into: str | os.PathLike = HERE) -> dict:
    """Write each shipped optimizer's ``generalization`` entry into ``into/manifest.json``
    from a ``phys-l2o bench`` folder that scored its weights (a method with the same SHA-256,
    under any name); returns the manifest.

    Raises:
        ValueError: the folder scored none of the shipped optimizers' current weights.
    """
    into = Path(into)
    document = read_manifest(into, missing_ok=False)
    results = json.loads((Path(bench) / "results.json").read_text())
    noted = []
    for name, entry in document["optimizers"].items():
        scored = scored_as(results, name, into / entry["file"])
        if scored is None:
            entry.pop("generalization", None)  # a note on other weights would mislead
            continue
        entry["generalization"] = generalization_note(results, scored)
        noted.append(name)
    if not noted:
        raise ValueError(f"{bench} scored none of the shipped optimizers' weights; run "
                         f"`phys-l2o bench heldout --out {bench}` first")
    path = write_manifest(into, document)
    print(f"noted the held-out scores of {', '.join(noted)} in {path}")
    return document


def pack_runs(runs: list[str | os.PathLike], commit: str, threads: int | None = None,
              into: str | os.PathLike = HERE) -> dict:
    """Pack every run of ``runs`` into the folder ``into`` and update its ``manifest.json``
    (entries of other optimizers are kept); returns the manifest."""
    into = Path(into)
    document = read_manifest(into)
    for run in runs:
        pack(run, commit, threads, document["optimizers"], into)
    write_manifest(into, document)
    return document


def final_summary(finals: list) -> dict:
    """Mean final loss over the problems that did not diverge, and how many did."""
    losses = as_losses(finals)
    finite = losses[np.isfinite(losses)]
    return {"mean": float(finite.mean()) if finite.size else None,
            "diverged": int(losses.size - finite.size), "problems": int(losses.size)}


def target_score(record: dict) -> float:
    """A sweep cell's mean over its test targets of the mean log final loss (lower is better;
    a diverged problem counts as infinite; a loss of 0 as 1e-12)."""
    return float(np.mean([np.log(np.maximum(as_losses(t["final"]), 1e-12)).mean()
                          for t in record["targets"].values()]))


def pack_sweep(run: str | os.PathLike, variant: str, name: str,
               into: str | os.PathLike = HERE) -> dict:
    """Ship one variant of a sweep's run folder as the pretrained optimizer ``name``: the
    meta-seed with the best ``target_score`` (the sweep's in-distribution test targets, never
    a held-out task), copied byte for byte, with its manifest entry (the commit is the one its
    cell records); returns the manifest.

    Raises:
        FileNotFoundError: the folder has no finished cell of ``variant``, or the sweep has not
            run to its end (its command is written then).
    """
    from ..experiments.folder import RunFolder

    folder, into = RunFolder(run), Path(into)
    manifest = folder.read_manifest()
    records = folder.learned_records(variant)
    if not records:
        variants = [v["name"] for v in manifest["sweep"].get("variants", [])]
        raise FileNotFoundError(f"{run} has no finished cell of variant {variant!r} (the sweep's "
                                f"variants: {', '.join(variants)})")
    scores = {r["seed"]: target_score(r) for r in records}
    chosen = min(records, key=lambda r: (scores[r["seed"]], r["seed"]))
    seed = chosen["seed"]
    optimizer, meta = load_checkpoint(folder.checkpoint(variant, seed))
    entry_variant = next(v for v in manifest["sweep"]["variants"] if v["name"] == variant)
    results = folder.read_results()  # the sweep ran to its end: its command is known
    sweep = manifest["sweep"]
    entry = {
        "file": f"{name}.pt", "spec": optimizer.spec(), "params": optimizer.num_params(),
        "task": sweep["name"], "task_spec": sweep["train"],
        "variant": variant, "estimator": entry_variant.get("estimator"),
        "command": public_command(results["command"], sweep["name"]),
        "commit": (chosen.get("versions", {}).get("commit") or "")[:7] or None,
        "threads": chosen.get("threads"), "seed": seed, "budget": manifest["budget"],
        "sizes": manifest.get("sizes"), "torch": chosen.get("versions", {}).get("torch"),
        "schedule": chosen.get("schedule"), "horizon": (chosen.get("schedule") or {}).get("steps"),
        "seconds": chosen["seconds"],
        "best_epoch": meta.get("best_epoch"), "validation_loss": meta.get("best_validation"),
        "selection": {"rule": "the meta-seed with the lowest mean log final loss on the "
                              "sweep's test targets (its training distribution)",
                      "scores": {str(k): v for k, v in sorted(scores.items())}},
        "test": {t: final_summary(v["final"]) for t, v in chosen["targets"].items()},
    }
    shutil.copyfile(folder.checkpoint(variant, seed), into / entry["file"])
    document = read_manifest(into)
    document["optimizers"][name] = entry
    write_manifest(into, document)
    print(f"wrote {entry['file']}: {variant!r} meta-seed {seed} of {len(records)} "
          f"({optimizer.num_params()} weights, {entry['seconds'] / 60:.0f} min of meta-training)")
    return document
