"""Make the package's pretrained weights from the output folders of ``phys-l2o reproduce``.

    python -m phys_l2o.pretrained.pack --commit REV RUN_DIR [RUN_DIR ...]

For each learned optimizer of each run (``checkpoints/<name>.pt``), writes
``<name>-<task>.pt`` here (the spec and the best weights) and its manifest entry: the command
that made it (its data folder written ``DIR``, its output folder ``runs/<task>``), the commit,
the torch threads it ran with, the seed and budget,
the schedule, the validation loss, and its rows of the run's test tables.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

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
    """The optimizer's final-loss summary on each evaluation target of a run."""
    if "optimizers" in results:
        return {results["task"]: results["optimizers"][name]["final_loss"]}
    return {f"{results['task']}-{net}": entry["optimizers"][name]["final_loss"]
            for net, entry in results["nets"].items()}


def pack(run: Path, commit: str, threads: int | None, manifest: dict) -> None:
    results = json.loads((run / "results.json").read_text())
    command = next((line.split("`")[1] for line in (run / "results.md").read_text().splitlines()
                    if line.startswith("Command: `")), None)
    for checkpoint in sorted((run / "checkpoints").glob("*.pt")):
        optimizer, meta = load_checkpoint(checkpoint)
        name = f"{checkpoint.stem}-{results['task']}"
        record = results["meta_training"][checkpoint.stem]
        entry = {
            "file": f"{name}.pt", "spec": optimizer.spec(), "params": optimizer.num_params(),
            "task": results["task"],
            "command": public_command(command, results["task"]) if command else None,
            "commit": commit, "threads": threads, "seed": results["seed"],
            "budget": results["budget"],
            "torch": results["torch"], "compiled": results.get("compiled"),
            "data": results.get("data"), "schedule": record["schedule"],
            "best_epoch": record["best_epoch"], "validation_loss": record["best_validation"],
            "test": test_rows(results, checkpoint.stem),
            "test_problems": results["problems"], "steps": results["steps"],
        }
        save_checkpoint(HERE / entry["file"], optimizer, pretrained=name, task=results["task"],
                        commit=commit, seed=results["seed"], budget=results["budget"],
                        best_epoch=meta.get("best_epoch"),
                        best_validation=meta.get("best_validation"))
        manifest[name] = entry
        print(f"wrote {entry['file']} ({optimizer.num_params()} weights, validation "
              f"{entry['validation_loss']:.4g})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="output folders of `reproduce`")
    parser.add_argument("--commit", required=True, help="the commit the runs were made at")
    parser.add_argument("--threads", type=int, default=None,
                        help="the torch threads the runs used (OMP_NUM_THREADS)")
    args = parser.parse_args()
    path = HERE / "manifest.json"
    document = json.loads(path.read_text()) if path.exists() else {"optimizers": {}}
    for run in args.runs:
        pack(run, args.commit, args.threads, document["optimizers"])
    document["optimizers"] = dict(sorted(document["optimizers"].items()))
    path.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
