"""Running a suite: tune the baselines per task, run every method on the same problems, keep
each result as a cell on disk, and score them.

    OUT/tuning/<task>/<baseline>-lr-<lr>.json   a baseline at one learning rate, tuning problems
    OUT/cells/<task>/<method>.json              a method on the evaluation problems
    OUT/results.json, results.md, profile.png   the scores (``report``)

A cell records what made it (its *key*: the task's spec and steps, the problems' seed and
count, the method's spec or the SHA-256 of its weights). A run reuses every cell whose key
matches and recomputes the others, so a run can stop at any point and continue, a second
optimizer scored into the same folder reuses the first run's tuning, and a changed task or
method never reuses a stale result.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..meta.evaluate import evaluate
from ..meta.tuning import choose
from ..registry import Spec, build, spec_of
from ..reporting.results import write_json
from ..seeding import make_generator
from ..tasks.base import Task
from .scores import FLOOR, scored_loss
from .suite import Suite, SuiteTask, build_suite_task

#: the format of every cell.
FORMAT = "phys-l2o-bench/1"


@dataclass(frozen=True)
class Method:
    """A method scored on the suite: a baseline at a fixed learning rate, a baseline tuned per
    task (``tuned``), or a learned optimizer (``source``: a pretrained name or a checkpoint
    path; ``group``: the variant of a sweep it is one meta-seed of)."""

    name: str
    kind: str  # "tuned", "untuned" or "learned"
    spec: Spec | None = None
    source: str | None = None
    sha256: str | None = None
    group: str | None = None

    def key(self) -> dict[str, Any]:
        return {"kind": self.kind, "spec": self.spec, "sha256": self.sha256}


def _file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def learned_method(source: str) -> Method:
    """A learned optimizer by pretrained name or checkpoint path, named by the file's stem or,
    written ``NAME=PATH``, by ``NAME`` (for the checkpoints of a sweep, all ``seed-<k>.pt``).

    Raises:
        FileNotFoundError: neither a pretrained name nor a checkpoint file.
    """
    name, sep, path = source.partition("=")
    if sep:
        if not name or not path:
            raise ValueError(f"expected NAME=CHECKPOINT, got {source!r}")
        method = learned_method(path)
        return Method(name, "learned", source=method.source, sha256=method.sha256)
    from importlib import resources

    from ..pretrained import PRETRAINED_PACKAGE, is_pretrained, pretrained_info, pretrained_names

    if is_pretrained(source):
        file = resources.files(PRETRAINED_PACKAGE).joinpath(pretrained_info(source)["file"])
        with resources.as_file(file) as path:
            return Method(source, "learned", source=source, sha256=_file_sha256(path))
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{source!r} is neither a pretrained optimizer "
                                f"({', '.join(pretrained_names())}) nor a checkpoint file")
    return Method(path.stem, "learned", source=str(path), sha256=_file_sha256(path))


def sweep_methods(run: str | os.PathLike) -> list[Method]:
    """Every finished learned cell of a sweep's run folder, one method per meta-seed, named
    ``<variant>-s<seed>`` and grouped by variant (in the sweep's order of variants).

    Raises:
        FileNotFoundError: ``run`` holds no sweep run or no finished learned cell.
    """
    from ..experiments.folder import RunFolder
    from ..experiments.spec import slug

    folder = RunFolder(run)
    if not folder.manifest_path.is_file():
        raise FileNotFoundError(f"{run} holds no sweep run (no sweep.json)")
    order = [v["name"] for v in folder.read_manifest().get("sweep", {}).get("variants", [])]
    cells = [(r["method"], r["seed"]) for r in folder.learned_records()]
    if not cells:
        raise FileNotFoundError(f"{run} has no finished learned cell yet: run its sweep first")
    cells.sort(key=lambda c: (order.index(c[0]) if c[0] in order else len(order), c[1]))
    methods = []
    for variant, seed in cells:
        checkpoint = folder.checkpoint(variant, seed)
        methods.append(Method(f"{slug(variant)}-s{seed}", "learned", source=str(checkpoint),
                              sha256=_file_sha256(checkpoint), group=variant))
    return methods


def suite_methods(suite: Suite, learned: Sequence[str]) -> list[Method]:
    """The tuned baselines, the untuned ones and the learned optimizers ``learned`` (pretrained
    names, checkpoint files, or sweep run folders: every meta-seed of every variant).

    Raises:
        ValueError: two methods with the same name.
    """
    methods = [Method(b, "tuned", spec={"type": b}) for b in suite.baselines]
    methods += [Method(n, "untuned", spec=s) for n, s in suite.untuned.items()]
    for source in learned:
        if Path(source).is_dir():
            methods += sweep_methods(source)
        else:
            methods.append(learned_method(source))
    seen: dict[str, Method] = {}
    for method in methods:
        if method.name in seen:
            first, second = seen[method.name], method
            raise ValueError(f"two methods are named {method.name!r} "
                             f"({first.source or first.kind} and "
                             f"{second.source or second.kind}); rename a checkpoint file")
        seen[method.name] = method
    return methods


# --------------------------------------------------------------------------------- one run


def run_method(optimizer: Any, task: Task, problems: dict, steps: int) -> dict[str, Any]:
    """One method on a batch of problems: per problem (seed), the training loss at the start
    and the end, the held-out loss at the start and the end (where the task has held-out
    data), the largest finite loss of the run and whether it diverged (a non-finite loss
    anywhere), and the mean curve over the problems that stayed finite."""
    start = time.perf_counter()
    before = task.final_losses(task.init_params(problems), problems)
    curves, params = evaluate(optimizer, task, problems, steps, return_params=True)
    after = task.final_losses(params, problems)
    curves = curves.double()
    finite = torch.isfinite(curves)
    diverged = ~finite.all(dim=1) | ~torch.isfinite(after["train"])
    if "heldout" in after:
        diverged |= ~torch.isfinite(after["heldout"])
    worst = torch.where(finite, curves, torch.full_like(curves, -torch.inf)).amax(dim=1)
    worst = torch.maximum(worst, before["train"].double())
    kept = curves[~diverged]
    record = {"initial": before["train"].tolist(), "final": after["train"].tolist(),
              "worst": worst.tolist(), "diverged": diverged.tolist(),
              "curve": kept.mean(dim=0).tolist() if len(kept) else None,
              "seconds": time.perf_counter() - start}
    if "heldout" in after:
        record.update(initial_heldout=before["heldout"].tolist(),
                      heldout=after["heldout"].tolist())
    return record


def scored(record: dict[str, Any], which: str = "train") -> np.ndarray:
    """A cell's losses over seeds as scored (``scored_loss``): its final training
    loss, or (``which="heldout"``) its final held-out loss."""
    diverged = np.asarray(record["diverged"], dtype=bool)
    if which == "heldout":
        initial = np.asarray(record["initial_heldout"], dtype=np.float64)
        return scored_loss(np.asarray(record["heldout"], dtype=np.float64), initial,
                                  initial, diverged)
    return scored_loss(np.asarray(record["final"], dtype=np.float64),
                              np.asarray(record["initial"], dtype=np.float64),
                              np.asarray(record["worst"], dtype=np.float64), diverged)


# --------------------------------------------------------------------------------- cells


class Cells:
    """The cells of a bench folder: read when their key matches, else computed and written."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.computed = 0
        self.reused = 0

    def get(self, path: Path, key: dict[str, Any], compute: Callable[[], dict]) -> dict:
        key = json.loads(json.dumps(key))
        if path.is_file():
            try:
                record = json.loads(path.read_text())
                if record.get("key") == key:
                    self.reused += 1
                    return record
            except (OSError, ValueError):
                pass  # a damaged cell is computed again
        record = {"format": FORMAT, "key": key, **compute()}
        write_json(path, record)  # non-finite numbers are written as null
        self.computed += 1
        return json.loads(path.read_text())


def _lr_text(lr: float) -> str:
    return f"{lr:.0e}".replace("e-0", "e-").replace("e+0", "e")


def _task_key(task: Task, suite_task: SuiteTask, seeds: int, stream: str, seed: int) -> dict:
    return {"task": spec_of(task), "steps": suite_task.steps, "problems": seeds,
            "stream": stream, "seed": seed}


def tune(suite: Suite, suite_task: SuiteTask, task: Task, cells: Cells, seed: int,
         device: torch.device, bar) -> dict[str, dict[str, Any]]:
    """Each tuned baseline's learning rate on ``task``: the grid value with the lowest mean
    log scored loss over the tuning problems (never the evaluation problems)."""
    stream = f"bench/{suite_task.name}/tuning"
    problems = task.sample(suite.tuning_seeds, make_generator(seed, stream), device)
    key = _task_key(task, suite_task, suite.tuning_seeds, stream, seed)
    chosen = {}
    for baseline in suite.baselines:
        trials = {}
        for lr in suite.grid:
            spec = {"type": baseline, "lr": float(lr)}
            path = cells.out / "tuning" / suite_task.name / f"{baseline}-lr-{_lr_text(lr)}.json"
            record = cells.get(path, {**key, "method": spec}, partial(
                run_method, build(spec, "baseline"), task, problems, suite_task.steps))
            trials[float(lr)] = float(np.mean(np.log(np.maximum(scored(record),
                                                                FLOOR))))
            bar.update()
        chosen[baseline] = choose(trials)
    return chosen


def run_suite(suite: Suite, methods: Sequence[Method], out: str | os.PathLike, *,
              seed: int = 0, data_root: str | None = None, device: torch.device | str = "cpu",
              progress: bool = True) -> dict[str, Any]:
    """Run every method of ``methods`` on every task of ``suite`` into the folder ``out``
    (reusing its matching cells); returns ``{"tuned": {task: {baseline: {...}}}, "cells":
    {task: {method: record}}}``."""
    from ..optim import resolve_optimizer

    device = torch.device(device)
    cells = Cells(out)
    learned = {m.name: resolve_optimizer(m.source).to(device) for m in methods
               if m.kind == "learned"}
    per_task = len(suite.baselines) * (len(suite.grid) + 1) + sum(
        m.kind != "tuned" for m in methods)
    tuned_all, cells_all = {}, {}
    with tqdm(total=per_task * len(suite.tasks), desc=f"bench {suite.name}", unit="cell",
              disable=not progress) as bar:
        for suite_task in suite.tasks:
            bar.set_postfix_str(suite_task.name)
            task = build_suite_task(suite_task, data_root=data_root, device=device)
            tuned = tune(suite, suite_task, task, cells, seed, device, bar)
            stream = f"bench/{suite_task.name}/test"
            problems = task.sample(suite.seeds, make_generator(seed, stream), device)
            key = _task_key(task, suite_task, suite.seeds, stream, seed)
            records = {}
            for method in methods:
                if method.kind == "learned":
                    optimizer = learned[method.name]
                    method_key = method.key()
                else:
                    spec = dict(method.spec)
                    if method.kind == "tuned":
                        spec["lr"] = tuned[method.name]["lr"]
                    optimizer = build(spec, "baseline")
                    method_key = {"kind": method.kind, "spec": spec}
                path = cells.out / "cells" / suite_task.name / f"{method.name}.json"
                records[method.name] = cells.get(path, {**key, "method": method_key}, partial(
                    run_method, optimizer, task, problems, suite_task.steps))
                bar.update()
            tuned_all[suite_task.name], cells_all[suite_task.name] = tuned, records
    return {"tuned": tuned_all, "cells": cells_all, "computed": cells.computed,
            "reused": cells.reused}
