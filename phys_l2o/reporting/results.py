"""Turn evaluation curves into the machine-readable results (``results.json``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

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


def summarize_methods(runs: Mapping[str, dict], params: Mapping[str, int | None],
                      reference: str | None = "hnn") -> dict[str, dict]:
    """Per method: ``params``, ``final_loss`` (mean, ci95, median), ``curve`` (mean per step),
    ``seconds``, and the paired difference of the final loss to ``reference``."""
    finals = {name: run["curves"][:, -1].double().numpy() for name, run in runs.items()}
    out = {}
    for name, run in runs.items():
        curves = run["curves"].double().numpy()
        entry = {"params": params.get(name), "final_loss": summarize(finals[name]),
                 "curve": curves.mean(axis=0).tolist(), "seconds": run.get("seconds")}
        if reference in finals and name != reference:
            entry[f"paired_diff_vs_{reference}"] = paired_difference(finals[name],
                                                                   finals[reference])
        out[name] = entry
    return out


def provenance(command: str | None) -> dict:
    """Where results come from: the command line, the version of phys-l2o, the commit of its
    source tree when it is a git checkout (else ``None``), and torch's version."""
    import subprocess

    import torch

    from .. import __version__

    commit = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                                capture_output=True, text=True, timeout=5,
                                check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"command": command, "version": __version__, "commit": commit,
            "torch": str(torch.__version__)}


def write_json(path: str | os.PathLike, results: dict) -> None:
    """Write ``results`` as strict JSON (non-finite numbers become ``null``), atomically."""
    text = json.dumps(_clean(results), indent=2, allow_nan=False)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))
