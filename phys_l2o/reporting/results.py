"""The machine-readable results (``results.json``): per method and target, from cell records."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..meta.checkpoint import atomic_write
from ..meta.stats import finite_or_none, paired_difference, summarize


def _clean(value):
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def method_entries(records: Sequence[Mapping], label: str,
                   reference: str | None = None) -> dict[str, dict]:
    """Per method, its results on the target ``label`` from the cell records (one per
    meta-seed of a learned optimizer, one for a baseline; see ``phys_l2o.experiments``).

    Each entry: ``params``, ``seeds``, ``final_loss`` (mean over seeds and problems with its
    hierarchical interval, median, ``seed_means``, ``diverged``), ``curve`` (mean loss per step
    over seeds and problems), ``seconds`` (mean per cell), ``nfe``, ``diverged_training`` (seeds
    whose meta-training diverged), ``meta_training`` (per seed: best epoch, best validation,
    seconds) and, with a ``reference`` among the methods, ``paired_diff`` (this method minus the
    reference on the same problems). A learned method watched on ``label`` during
    meta-training also gets an oracle entry (``oracle_name``).
    """
    by_method: dict[str, list[Mapping]] = {}
    for record in records:
        if label in record["targets"]:
            by_method.setdefault(record["method"], []).append(record)
    for record in records:
        oracle = record["targets"].get(label, {}).get("oracle")
        if oracle is not None:
            by_method.setdefault(oracle_name(record["method"]), []).append(
                {**record, "method": oracle_name(record["method"]), "targets": {label: oracle},
                 "meta_training": {**record["meta_training"], "best_epoch": oracle["epoch"]}})
    finals = {m: np.stack([as_losses(r["targets"][label]["final"]) for r in rs])
              for m, rs in by_method.items()}
    out = {}
    for method, rs in by_method.items():
        entry = {"params": rs[0].get("params"), "seeds": len(rs),
                 "final_loss": summarize(finals[method]),
                 "curve": np.mean([as_losses(r["targets"][label]["curve"]) for r in rs],
                                  axis=0).tolist(),
                 "seconds": float(np.mean([r.get("seconds", 0.0) for r in rs])),
                 "nfe": rs[0].get("nfe")}
        trained = [r for r in rs if r.get("meta_training")]
        if trained:
            entry["diverged_training"] = sum(bool(r["meta_training"]["diverged"])
                                             for r in trained)
            entry["meta_training"] = [
                {"seed": r["seed"], "best_epoch": r["meta_training"]["best_epoch"],
                 "best_validation": r["meta_training"]["best_validation"],
                 "seconds": r["meta_training"]["seconds"],
                 "skipped_updates": r["meta_training"]["skipped_updates"]} for r in trained]
        if reference in finals and method != reference:
            entry["paired_diff"] = {**paired_difference(finals[method], finals[reference]),
                                    "reference": reference}
        out[method] = entry
    return out


def read_finals(records: Sequence[Mapping]) -> dict[str, dict[str, np.ndarray]]:
    """``{target: {method: finals}}`` from a run's cell records: a learned optimizer's finals
    as ``(seeds, problems)`` (seeds in order), a baseline's (one deterministic run) as
    ``(problems,)``."""
    per: dict[str, dict[str, list]] = {}
    for record in records:
        for label, target in record["targets"].items():
            per.setdefault(label, {}).setdefault(record["method"], []).append(
                (record.get("seed"), as_losses(target["final"])))
    out: dict[str, dict[str, np.ndarray]] = {}
    for label, methods in per.items():
        out[label] = {}
        for method, rows in methods.items():
            if rows[0][0] is None:  # a baseline
                out[label][method] = np.asarray(rows[0][1], dtype=np.float64)
            else:
                out[label][method] = np.stack([f for _, f in sorted(rows, key=lambda r: r[0])])
    return out


def oracle_name(method: str) -> str:
    """The name of a learned method's oracle row: its weights of the epoch that was best on
    this target's own validation (which the training task's validation cannot see)."""
    return f"{method} (oracle epoch)"


def as_losses(values: Sequence) -> np.ndarray:
    """Losses read back from JSON (where a diverged one is ``null``) as a float array."""
    return np.array([math.inf if v is None else v for v in values], dtype=np.float64)


def losses_record(losses, index: int = -1) -> dict[str, list[float]]:
    """Losses ``(problems, steps)`` as a cell record keeps them: each problem's ``final`` loss
    (the loss at step ``index``: the last by default, ``-2`` for the reference protocol's
    ``F(theta_{T-1})``) and the mean ``curve`` (a non-finite loss becomes ``null`` in JSON and
    is read back as ``inf``)."""
    losses = losses.double().cpu()
    return {"final": losses[:, index].tolist(), "curve": losses.mean(0).tolist()}


def curve_record(method: str, losses, *, params: int | None = None, seconds: float = 0.0,
                 label: str = "target") -> dict:
    """A one-run record (the shape of a baseline cell's) from losses ``(problems, steps)``,
    for ``method_entries``: how a single evaluation is reported."""
    return {"method": method, "seed": None, "params": params, "nfe": None, "seconds": seconds,
            "targets": {label: losses_record(losses)}}


def summarize_methods(runs: Mapping[str, dict], params: Mapping[str, int | None],
                      reference: str | None = None) -> dict[str, dict]:
    """The entries of ``method_entries`` for the output of ``phys_l2o.compare`` (one run per
    method on the same problems): ``params`` per method, the paired difference to
    ``reference`` when it is among them."""
    records = [curve_record(name, run["curves"], params=params.get(name),
                            seconds=run.get("seconds", 0.0)) for name, run in runs.items()]
    return method_entries(records, "target", reference)


#: the package's source tree.
PACKAGE = Path(__file__).resolve().parents[1]


def source_hash(root: str | os.PathLike = PACKAGE) -> str:
    """SHA-256 over the source files under ``root`` (every ``.py``, ``.toml`` and ``.json``, by
    relative path and content, in sorted order): what computed a result, whether or not the
    tree was committed."""
    import hashlib

    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in {".py", ".toml", ".json"}
                       and "__pycache__" not in p.parts and p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def provenance(command: str | None) -> dict:
    """Where results come from: the command line, the version of phys-l2o, the commit of its
    source tree when it is a git checkout (else ``None``), whether the package had changes
    that commit does not hold (``dirty``: modified, staged or untracked files under
    ``phys_l2o``), the hash of the package's source files (``source``, ``source_hash``) and
    torch's version."""
    import torch

    from .. import __version__

    commit, dirty = git_state(PACKAGE)
    return {"command": command, "version": __version__, "commit": commit, "dirty": dirty,
            "source": source_hash(), "torch": str(torch.__version__)}


def git_state(folder: str | os.PathLike) -> tuple[str | None, bool | None]:
    """The commit checked out where ``folder`` lies and whether ``folder`` holds changes it
    does not (modified, staged or untracked files, ignored ones aside); ``(None, None)``
    outside a git checkout or without git."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()

    try:
        return git("rev-parse", "HEAD") or None, bool(
            git("status", "--porcelain", "--untracked-files=all", "--", "."))
    except (OSError, subprocess.SubprocessError):
        return None, None


def write_json(path: str | os.PathLike, results: dict) -> None:
    """Write ``results`` as strict JSON (non-finite numbers become ``null``), atomically."""
    text = json.dumps(_clean(results), indent=2, allow_nan=False)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))
