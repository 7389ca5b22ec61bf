"""Sweeps: an experiment as data, and the one runner that carries it out.

A sweep file (TOML) names a training task, the evaluation targets (task specs, each with the
baselines and their learning rates), the variants (learned optimizer specs, each with its
meta-training settings), the budgets and, optionally, the reference method of the paired
comparisons::

    name = "pieces-quadratic"
    title = "Pieces of the field: quadratic"
    reference = "hnn (paper)"
    train = { type = "quadratic" }

    [budgets.paper]
    epochs = 100
    trajectories = 20
    meta_batch = 1
    validation_problems = 50
    test_problems = 100
    steps = 100
    seeds = 3

    [targets.quadratic]
    task = { type = "quadratic" }
    baselines = { adam = { type = "adam", lr = 0.1 } }

    [[variants]]
    name = "hnn (paper)"
    optimizer = { type = "hnn", out_mul = 0.001 }
    unroll = 15
    meta_lr = 0.01

``run_sweep`` (``phys-l2o sweep FILE``) splits it into *cells*: one per (variant, meta-seed),
a meta-training followed by the evaluation of the best weights on every target, and one per
baseline. Every cell writes its record to ``OUT/cells/<method>/seed-<k>.json`` (a baseline:
``baseline.json``) the moment it finishes, atomically; a learned cell also writes its
checkpoint beside it and, while it trains, its training state. Running the same sweep on the
same ``OUT`` again resumes: finished cells are read back, a cell that was meta-training goes
on from its last epoch. Under ``torchrun`` the cells are dealt to the ranks round-robin and
rank 0 gathers the records and writes the reports: ``results.json``, ``results.md``,
``intervals.png`` and ``curves-<target>.png``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checks import check_output_dir, positive_int, positive_number
from .protocols import (
    REPORTED_LOSSES,
    check_protocol,
    reported_index,
    reported_loss,
    variant_under,
)
from .registry import Spec, as_spec, build, load_toml, lookup, plain_data

#: the format written into a sweep's ``sweep.json`` and every cell record.
FORMAT = "phys-l2o-sweep/1"
#: the schedule fields a variant may set (the budget gives the others).
SCHEDULE_FIELDS = ("epochs", "trajectories", "meta_batch", "steps", "unroll", "meta_lr",
                   "validation_problems", "loss_window", "validation_pool")
#: what a variant may set besides its name, its optimizer and schedule fields: the ``out_mul``
#: it is evaluated with, when not the one it was meta-trained with.
VARIANT_FIELDS = ("test_out_mul",)
#: what every budget gives.
BUDGET_FIELDS = ("epochs", "trajectories", "meta_batch", "validation_problems",
                 "test_problems", "steps", "seeds")
#: the top-level keys of a sweep file.
TOP_KEYS = ("name", "title", "description", "reference", "train", "targets", "variants",
            "budgets", "default_budget", "test_seed", "monitor", "reported_loss")
#: a learned cell is compiled (auto) when its meta-training has at least this many
#: trajectories: enough to pay back the seconds of compilation.
COMPILE_FROM_TRAJECTORIES = 200
#: the package's own sweep files (the paper's experiments).
PACKAGE_SWEEPS = Path(__file__).resolve().parent / "sweeps"


class SweepError(ValueError):
    """A sweep file, or the folder it runs in, is not what the sweep needs."""


def slug(name: str) -> str:
    """A method's name as a file name: ``"hnn (paper)"`` -> ``"hnn-paper"``."""
    text = re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-")
    return text or "method"


@dataclass(frozen=True)
class Variant:
    """A learned optimizer to meta-train: its spec and the schedule fields it sets."""

    name: str
    optimizer: Spec
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """An evaluation target: a task, the baselines run on it, and optionally a title and the
    paper's numbers for the table."""

    label: str
    task: Spec
    baselines: dict[str, Spec] = field(default_factory=dict)
    title: str | None = None
    paper: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    """One unit of work: a variant with one meta-seed, or a baseline (``seed`` is ``None``)."""

    method: str
    seed: int | None

    @property
    def learned(self) -> bool:
        return self.seed is not None

    def stem(self) -> str:
        """The cell's files, relative to ``OUT/cells``, without a suffix."""
        return f"{slug(self.method)}/" + ("baseline" if self.seed is None else
                                          f"seed-{self.seed}")

    def __str__(self) -> str:
        return self.method if self.seed is None else f"{self.method} (seed {self.seed})"


@dataclass(frozen=True)
class Sweep:
    """A sweep file's contents, checked. ``to_dict`` gives the file's data back."""

    name: str
    train: Spec
    targets: tuple[Target, ...]
    variants: tuple[Variant, ...]
    budgets: dict[str, dict[str, int]]
    title: str = ""
    description: str = ""
    reference: str | None = None
    default_budget: str | None = None
    test_seed: int = 0
    monitor: tuple[str, ...] = ()
    reported_loss: str = "last"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "sweep") -> Sweep:
        """Check a sweep's data (a parsed file) and make the sweep.

        Raises:
            SweepError: a missing or unknown key, a bad budget, a duplicate method name, or a
                spec that names no registered type or has a bad option (each names where).
        """
        if not isinstance(data, Mapping):
            raise SweepError(f"{where}: a sweep is a table of keys, got {type(data).__name__}")
        unknown = sorted(set(data) - set(TOP_KEYS))
        if unknown:
            raise SweepError(f"{where}: unknown keys {unknown}; a sweep file holds "
                             f"{list(TOP_KEYS)}")
        for key in ("name", "train", "targets", "budgets"):
            if key not in data:
                raise SweepError(f"{where}: missing `{key}` (see the sweep format in the docs: "
                                 "`phys-l2o sweep --help`)")
        name = _text(data["name"], f"{where}: name")
        budgets = {str(b): _budget(sizes, f"{where}: [budgets.{b}]")
                   for b, sizes in _table(data["budgets"], f"{where}: budgets").items()}
        if not budgets:
            raise SweepError(f"{where}: [budgets] names no budget")
        targets = tuple(_target(label, value, f"{where}: [targets.{label}]")
                        for label, value in _table(data["targets"], f"{where}: targets").items())
        if not targets:
            raise SweepError(f"{where}: [targets] names no evaluation target")
        raw_variants = data.get("variants", [])
        if not isinstance(raw_variants, list):
            raise SweepError(f"{where}: variants must be an array of tables ([[variants]])")
        variants = tuple(_variant(v, f"{where}: variants[{i}]")
                         for i, v in enumerate(raw_variants))
        if not variants and not any(t.baselines for t in targets):
            raise SweepError(f"{where}: nothing to run: no [[variants]] and no baselines")
        names = [v.name for v in variants]
        baselines = {b for t in targets for b in t.baselines}
        clash = sorted({n for n in names if names.count(n) > 1} | (set(names) & baselines))
        if clash:
            raise SweepError(f"{where}: method names must be unique (variants and baselines): "
                             f"{clash}")
        if len({slug(n) for n in [*names, *baselines]}) < len(set(names) | baselines):
            raise SweepError(f"{where}: two method names give the same file name; rename one")
        reference = data.get("reference")
        if reference is not None and reference not in set(names) | baselines:
            raise SweepError(f"{where}: reference {reference!r} is neither a variant nor a "
                             f"baseline; choose from {sorted(set(names) | baselines)}")
        default_budget = data.get("default_budget")
        if default_budget is not None and default_budget not in budgets:
            raise SweepError(f"{where}: default_budget {default_budget!r} is not among the "
                             f"budgets {sorted(budgets)}")
        test_seed = data.get("test_seed", 0)
        if isinstance(test_seed, bool) or not isinstance(test_seed, int) or test_seed < 0:
            raise SweepError(f"{where}: test_seed must be an integer >= 0, got {test_seed!r}")
        train = _spec(data["train"], "task", f"{where}: train")
        monitor = data.get("monitor", [])
        labels = [t.label for t in targets]
        if not isinstance(monitor, list) or any(m not in labels for m in monitor):
            raise SweepError(f"{where}: monitor must list targets to validate during "
                             f"meta-training, among {labels}; got {monitor!r}")
        reported = data.get("reported_loss", "last")
        if reported not in REPORTED_LOSSES:
            raise SweepError(f"{where}: reported_loss must be one of {list(REPORTED_LOSSES)}, "
                             f"got {reported!r}")
        return cls(name=name, train=train, targets=targets, variants=variants, budgets=budgets,
                   title=str(data.get("title", name)), description=str(data.get("description",
                                                                               "")),
                   reference=reference, default_budget=default_budget, test_seed=test_seed,
                   monitor=tuple(monitor), reported_loss=reported)

    def to_dict(self) -> dict[str, Any]:
        """The sweep as plain data, in the layout of a sweep file (``to_toml`` writes it)."""
        out: dict[str, Any] = {"name": self.name, "title": self.title}
        if self.description:
            out["description"] = self.description
        if self.reference is not None:
            out["reference"] = self.reference
        if self.default_budget is not None:
            out["default_budget"] = self.default_budget
        out["test_seed"] = self.test_seed
        if self.monitor:
            out["monitor"] = list(self.monitor)
        if self.reported_loss != "last":
            out["reported_loss"] = self.reported_loss
        out["train"] = self.train
        out["budgets"] = {k: dict(v) for k, v in self.budgets.items()}
        out["targets"] = {}
        for t in self.targets:
            entry: dict[str, Any] = {"task": t.task}
            if t.title:
                entry["title"] = t.title
            if t.baselines:
                entry["baselines"] = dict(t.baselines)
            if t.paper:
                entry["paper"] = dict(t.paper)
            out["targets"][t.label] = entry
        out["variants"] = [{"name": v.name, "optimizer": v.optimizer, **v.settings}
                           for v in self.variants]
        return plain_data(out, self.name)

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    def budget(self, name: str | None = None) -> tuple[str, dict[str, int]]:
        """The budget called ``name`` (default: ``default_budget``, else the first)."""
        name = name or self.default_budget or next(iter(self.budgets))
        if name not in self.budgets:
            raise SweepError(f"sweep {self.name!r} has no budget {name!r}; its budgets: "
                             f"{', '.join(sorted(self.budgets))}")
        return name, dict(self.budgets[name])

    def baselines(self) -> list[str]:
        """Every baseline's name, in the order the targets list them."""
        return list(dict.fromkeys(b for t in self.targets for b in t.baselines))

    def cells(self, seeds: list[int], max_seeds: Mapping[str, int] | None = None) -> list[Cell]:
        """The work: every variant with every seed (variant-major; a variant named in
        ``max_seeds`` with the first that many only), then every baseline."""
        limit = dict(max_seeds or {})
        return ([Cell(v.name, s) for v in self.variants
                 for s in seeds[:limit.get(v.name, len(seeds))]]
                + [Cell(b, None) for b in self.baselines()])

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SweepError(f"{where} must be a non-empty string, got {value!r}")
    return value


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SweepError(f"{where} must be a table, got {type(value).__name__}")
    return value


def _spec(value: Any, kind: str, where: str) -> Spec:
    try:
        spec = as_spec(value)
        lookup(spec["type"], kind)
    except (ValueError, TypeError, KeyError) as error:
        raise SweepError(f"{where}: {error}") from None
    return plain_data(spec, where)


def _budget(value: Any, where: str) -> dict[str, int]:
    sizes = dict(_table(value, where))
    missing = [k for k in BUDGET_FIELDS if k not in sizes]
    unknown = sorted(set(sizes) - set(BUDGET_FIELDS))
    if missing or unknown:
        raise SweepError(f"{where}: a budget gives exactly {list(BUDGET_FIELDS)}"
                         + (f"; missing {missing}" if missing else "")
                         + (f"; unknown {unknown}" if unknown else ""))
    for key, number in sizes.items():
        try:
            positive_int(key, number)
        except ValueError as error:
            raise SweepError(f"{where}: {error}") from None
    return sizes


def _target(label: str, value: Any, where: str) -> Target:
    table = dict(_table(value, where))
    unknown = sorted(set(table) - {"task", "baselines", "title", "paper"})
    if unknown or "task" not in table:
        raise SweepError(f"{where}: a target holds `task` (a task spec) and optionally "
                         "`baselines`, `title` and `paper`"
                         + (f"; unknown {unknown}" if unknown else "; `task` is missing"))
    baselines = {str(name): _spec(spec, "baseline", f"{where}: baselines.{name}")
                 for name, spec in _table(table.get("baselines", {}),
                                          f"{where}: baselines").items()}
    for name, spec in baselines.items():
        try:
            build(spec, "baseline")  # a bad learning rate fails here
        except (ValueError, TypeError) as error:
            raise SweepError(f"{where}: baselines.{name}: {error}") from None
    paper = {str(k): float(v) for k, v in _table(table.get("paper", {}),
                                                  f"{where}: paper").items()}
    return Target(label, _spec(table["task"], "task", f"{where}: task"), baselines,
                  table.get("title"), paper)


def _variant(value: Any, where: str) -> Variant:
    table = dict(_table(value, where))
    if "name" not in table or "optimizer" not in table:
        raise SweepError(f"{where}: a variant needs `name` and `optimizer` (a learned optimizer "
                         "spec)")
    name = _text(table.pop("name"), f"{where}: name")
    where = f"{where} ({name})"
    spec = _spec(table.pop("optimizer"), "optimizer", f"{where}: optimizer")
    unknown = sorted(set(table) - set(SCHEDULE_FIELDS) - set(VARIANT_FIELDS))
    if unknown:
        raise SweepError(f"{where}: unknown keys {unknown}; besides name and optimizer a "
                         f"variant may set the schedule fields {list(SCHEDULE_FIELDS)} and "
                         f"{list(VARIANT_FIELDS)}")
    try:
        from .meta import Schedule

        Schedule(**{k: v for k, v in table.items() if k in SCHEDULE_FIELDS})
        if "test_out_mul" in table:
            positive_number("test_out_mul", table["test_out_mul"])
        build(spec, "optimizer")  # a bad option fails here, not hours into the sweep
    except (ValueError, TypeError) as error:
        raise SweepError(f"{where}: {error}") from None
    return Variant(name, spec, table)


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Read and check a sweep file.

    Raises:
        FileNotFoundError: no such file.
        SweepError: the file is not valid TOML or not a valid sweep (the message says where).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep file at {path}")
    try:
        data = load_toml(path)
    except ValueError as error:
        raise SweepError(str(error)) from None
    return Sweep.from_dict(data, str(path))


def paper_sweep(task: str) -> Sweep:
    """The paper's experiment on ``task`` (``quadratic`` or ``mnist``) as a sweep."""
    path = PACKAGE_SWEEPS / f"paper-{task}.toml"
    if not path.is_file():
        names = sorted(p.stem.removeprefix("paper-") for p in PACKAGE_SWEEPS.glob("paper-*.toml"))
        raise SweepError(f"no paper sweep for {task!r}; choose from {names}")
    return load_sweep(path)


def build_task(spec: Spec, steps: int, **context: Any):
    """Build a task spec where it runs (``data_root``, ``device``), for runs of ``steps`` steps
    where the task takes a step count (MNIST precomputes its minibatch order)."""
    import inspect

    spec = as_spec(spec)
    cls = lookup(spec["type"], "task")
    if "steps" in inspect.signature(cls.__init__).parameters and "steps" not in spec:
        spec["steps"] = steps
    return build(spec, "task", **context)


# --------------------------------------------------------------------------------------------
# running


@dataclass
class Plan:
    """What a run does: the sweep, its budget, seeds and sizes, its protocol (see
    ``phys_l2o.protocols``), and where it writes."""

    sweep: Sweep
    budget: str
    sizes: dict[str, int]
    seeds: list[int]
    out: Path
    protocol: str = "corrected"
    max_seeds: dict[str, int] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        """What must match for a run in ``out`` to be resumed: the sweep, the budget's
        sizes and the protocol (the seeds may change: each seed is its own cells)."""
        sizes = {k: v for k, v in self.sizes.items() if k != "seeds"}
        return {"format": FORMAT, "sweep": self.sweep.to_dict(), "budget": self.budget,
                "sizes": sizes, "protocol": self.protocol}

    @property
    def reported_loss(self) -> str:
        """The loss per problem that the cells record as ``final``."""
        return reported_loss(self.protocol, self.sweep.reported_loss)

    def setup(self, variant: Variant) -> tuple[Spec, dict[str, Any]]:
        """The variant's optimizer spec and settings under the plan's protocol."""
        return variant_under(self.protocol, variant.optimizer, variant.settings)

    def schedule(self, variant: Variant):
        from .meta import Schedule
        from .presets import DEFAULT_META

        fields = {k: self.sizes[k] for k in SCHEDULE_FIELDS if k in self.sizes}
        settings = {k: v for k, v in self.setup(variant)[1].items() if k in SCHEDULE_FIELDS}
        return Schedule(**{**fields, **DEFAULT_META, **settings})

    def cell_path(self, cell: Cell, suffix: str) -> Path:
        return self.out / "cells" / f"{cell.stem()}{suffix}"


def make_plan(sweep: Sweep, budget: str | None = None, *, out: str | os.PathLike,
              seeds: int | list[int] | None = None,
              overrides: Mapping[str, int] | None = None, protocol: str = "corrected",
              max_seeds: Mapping[str, int] | None = None) -> Plan:
    """The budget's sizes with ``overrides`` (budget fields) applied, and the seeds: a count
    (``0 .. n-1``), a list, or ``None`` for the budget's ``seeds``; ``protocol``: see
    ``phys_l2o.protocols``; ``max_seeds``: variants that run only the first that many seeds
    (a costly one)."""
    names = [v.name for v in sweep.variants]
    for method, count in (max_seeds or {}).items():
        if method not in names:
            raise SweepError(f"max_seeds names {method!r}, which is not a variant of sweep "
                             f"{sweep.name!r}; its variants: {names}")
        try:
            positive_int(f"max_seeds of {method}", count)
        except ValueError as error:
            raise SweepError(str(error)) from None
    try:
        check_protocol(protocol)
    except ValueError as error:
        raise SweepError(str(error)) from None
    name, sizes = sweep.budget(budget)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in BUDGET_FIELDS:
            raise SweepError(f"cannot override {key!r}; a budget gives {list(BUDGET_FIELDS)}")
        sizes[key] = positive_int(key, value)
    if seeds is None:
        seeds = sizes["seeds"]
    if isinstance(seeds, int):
        seeds = list(range(positive_int("seeds", seeds)))
    seeds = [int(s) for s in seeds]
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise SweepError(f"seeds must be distinct integers >= 0, got {seeds}")
    sizes["seeds"] = len(seeds)
    return Plan(sweep, name, sizes, seeds, Path(out), protocol, dict(max_seeds or {}))


#: files in a sweep's folder that belong to a run (anything else is left alone).
RUN_FILES = ("sweep.json", "sweep.log", "results.json", "results.md", "intervals.png",
             "curves-*.png")


def earlier_files(out: Path) -> list[Path]:
    files = [p for pattern in RUN_FILES for p in out.glob(pattern)]
    if (out / "cells").is_dir():
        files.append(out / "cells")
    return sorted(files)


def check_folder(plan: Plan, overwrite: bool = False) -> str:
    """Decide what to do with ``plan.out``: ``"new"``, ``"resume"`` (the same sweep and
    budget), or ``"overwrite"``. Reads only.

    Raises:
        SweepError: the folder holds another sweep's run, or files of an unknown run, and
            ``overwrite`` was not given; or it is not a writable folder.
    """
    check_output_dir(plan.out)
    earlier = earlier_files(plan.out) if plan.out.is_dir() else []
    if not earlier:
        return "new"
    if overwrite:
        return "overwrite"
    manifest = plan.out / "sweep.json"
    try:
        theirs = json.loads(manifest.read_text())
    except (OSError, ValueError):
        raise SweepError(f"{plan.out} holds results of another run ({earlier[0].name}) but no "
                         "readable sweep.json; pass --overwrite to start again there, or "
                         "choose another --out") from None
    mine = json.loads(json.dumps(plan.manifest()))
    if isinstance(theirs, dict):
        theirs.setdefault("protocol", "corrected")  # written before protocols existed
    if theirs != mine:
        what = ("another sweep" if theirs.get("sweep") != mine["sweep"] else
                f"the {theirs.get('protocol')!r} protocol"
                if theirs.get("protocol") != mine["protocol"] else
                f"budget {theirs.get('budget')!r} (sizes {theirs.get('sizes')})")
        raise SweepError(f"{plan.out} holds a run of {what}; this run is sweep "
                         f"{plan.sweep.name!r} with budget {plan.budget!r} (sizes "
                         f"{mine['sizes']}), protocol {plan.protocol!r}. Pass --overwrite to "
                         "start again there, or choose another --out")
    return "resume"


def prepare_folder(plan: Plan, mode: str) -> None:
    """Make the folder ready (local rank 0 of each machine): remove an earlier run's files for
    ``overwrite``, write ``sweep.json``."""
    from .reporting import write_json

    if mode == "overwrite":  # (machines that share a folder may both remove it)
        for path in earlier_files(plan.out):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    plan.out.mkdir(parents=True, exist_ok=True)
    if mode != "resume":
        write_json(plan.out / "sweep.json", plan.manifest())


def read_cell(plan: Plan, cell: Cell) -> dict | None:
    """A finished cell's record, or ``None`` if it has none (or a damaged one, which is then
    recomputed)."""
    path = plan.cell_path(cell, ".json")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def write_cell(plan: Plan, cell: Cell, record: dict) -> None:
    from .reporting import write_json

    path = plan.cell_path(cell, ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)


class Runner:
    """Runs the cells of a plan in this process: builds the tasks and the shared test problems
    once, then meta-trains and evaluates one cell at a time."""

    def __init__(self, plan: Plan, *, device: torch.device, data_root: str | None = None,
                 compile: bool | None = None, threads: int = 1,
                 versions: dict | None = None) -> None:
        from .seeding import make_generator

        self.plan, self.device, self.compile = plan, device, compile
        self.threads, self.versions = threads, versions or {}
        steps = plan.sizes["steps"]
        context = {"data_root": data_root, "device": device}
        self.train_task = build_task(plan.sweep.train, steps, **context)
        self.tasks = {}
        for t in plan.sweep.targets:
            same = as_spec(t.task) == as_spec(plan.sweep.train)
            self.tasks[t.label] = self.train_task if same else build_task(t.task, steps,
                                                                          **context)
        # targets watched during meta-training, on problems of the training task's pool
        pool = {"pool": plan.sweep.train["pool"]} if "pool" in plan.sweep.train else {}
        self.monitors = {label: build_task({**as_spec(t.task), **pool}, steps, **context)
                         for t in plan.sweep.targets if (label := t.label) in plan.sweep.monitor}
        self.notes = sorted({n for task in [self.train_task, *self.tasks.values()]
                             if (n := getattr(task, "data_note", None))})
        # every method and seed runs on the same test problems of each target
        self.problems = {label: task.sample(plan.sizes["test_problems"],
                                            make_generator(plan.sweep.test_seed, "test"), device)
                         for label, task in self.tasks.items()}

    def use_compile(self, optimizer, schedule) -> bool:
        from .optimizers.base import compile_available

        if self.compile is not None:
            return self.compile
        return (schedule.epochs * schedule.trajectories >= COMPILE_FROM_TRAJECTORIES
                and compile_available() and not optimizer.uncompilable_pieces())

    def run(self, cell: Cell) -> dict:
        start = time.perf_counter()
        record = self.run_learned(cell) if cell.learned else self.run_baseline(cell)
        # a resumed cell's time includes its meta-training in the processes before this one
        earlier = record.pop("earlier_seconds", 0.0)
        record.update(format=FORMAT, method=cell.method, seed=cell.seed,
                      protocol=self.plan.protocol, reported_loss=self.plan.reported_loss,
                      seconds=time.perf_counter() - start + earlier, device=str(self.device),
                      threads=self.threads, versions=self.versions)
        return record

    def evaluate_all(self, optimizer, labels) -> dict[str, dict]:
        from .meta import evaluate
        from .reporting.results import losses_record

        out = {}
        index = reported_index(self.plan.reported_loss)
        for label in labels:
            begin = time.perf_counter()
            losses = evaluate(optimizer, self.tasks[label], self.problems[label],
                              self.plan.sizes["steps"])
            out[label] = {**losses_record(losses, index), "seconds": time.perf_counter() - begin}
        return out

    def run_baseline(self, cell: Cell) -> dict:
        specs = {t.label: t.baselines[cell.method] for t in self.plan.sweep.targets
                 if cell.method in t.baselines}
        targets = {}
        for label, spec in specs.items():
            targets.update(self.evaluate_all(build(spec, "baseline"), [label]))
        return {"kind": "baseline", "spec": specs, "params": None, "nfe": None,
                "targets": targets}

    def run_learned(self, cell: Cell) -> dict:
        from .meta import MetaTrainingDiverged, meta_train, save_checkpoint
        from .reproduce import build_seeded

        variant = self.plan.sweep.variant(cell.method)
        spec, settings = self.plan.setup(variant)
        schedule = self.plan.schedule(variant)
        optimizer = build_seeded(spec, cell.seed, f"init-{spec['type']}")
        compiled = self.use_compile(optimizer, schedule)
        if compiled:
            torch._dynamo.reset()  # one cell's compiled steps do not count against the next's
        optimizer.compile_step(compiled)
        state = self.plan.cell_path(cell, ".training.pt")
        state.parent.mkdir(parents=True, exist_ok=True)
        diverged = False
        began = time.perf_counter()
        try:
            result = meta_train(optimizer, self.train_task, schedule, seed=cell.seed,
                                device=self.device, progress=False, state_path=state,
                                resume=state.is_file(), monitors=self.monitors)
        except MetaTrainingDiverged as error:  # the optimizer holds the best weights before
            result, diverged = error.result, True
        earlier = max(0.0, result.seconds - (time.perf_counter() - began))
        save_checkpoint(self.plan.cell_path(cell, ".pt"), optimizer,
                        task=self.plan.sweep.train["type"], task_spec=self.plan.sweep.train,
                        sweep=self.plan.sweep.name, budget=self.plan.budget, seed=cell.seed,
                        schedule=schedule.to_dict(), best_epoch=result.best_epoch,
                        best_validation=result.best_validation)
        test_out_mul = settings.get("test_out_mul")
        if test_out_mul is not None:  # evaluated with another out_mul than it was trained with
            optimizer.out_mul = test_out_mul
        targets = self.evaluate_all(optimizer, list(self.tasks))
        readout = getattr(optimizer, "readout", optimizer)  # the parameter state counts its own
        nfe = getattr(readout, "nfe", None)
        watched = {}
        for label, best in result.monitors.items():
            # the oracle: the weights of the epoch that was best on this target's validation
            optimizer.load_state_dict(best["state"])
            targets[label]["oracle"] = {**self.evaluate_all(optimizer, [label])[label],
                                        "epoch": best["epoch"]}
            watched[label] = {"best_epoch": best["epoch"], "best_validation": best["validation"],
                              "validation": [h["monitors"][label] for h in result.history]}
        state.unlink(missing_ok=True)
        return {"kind": "learned", "earlier_seconds": earlier,
                "spec": spec, "schedule": schedule.to_dict(),
                "test_out_mul": test_out_mul, "compiled": compiled,
                "params": optimizer.num_params(), "nfe": nfe, "targets": targets,
                "meta_training": {"seconds": result.seconds, "best_epoch": result.best_epoch,
                                  "best_validation": result.best_validation,
                                  "validation": [h["validation"] for h in result.history],
                                  "monitors": watched,
                                  "skipped_updates": result.skipped_updates,
                                  "diverged": diverged}}


def run_sweep(sweep: Sweep | str | os.PathLike, budget: str | None = None, *,
              out: str | os.PathLike, seeds: int | list[int] | None = None,
              device: str | torch.device | None = "auto", threads: int | None = None,
              data_root: str | None = None, compile: bool | None = None,
              overrides: Mapping[str, int] | None = None, overwrite: bool = False,
              progress: bool = True, command: str | None = None,
              protocol: str = "corrected",
              max_seeds: Mapping[str, int] | None = None) -> dict | None:
    """Run a sweep (a ``Sweep`` or a sweep file) into ``out`` and write its reports.

    Finished cells already in ``out`` (of the same sweep and budget) are reused; a cell that
    was meta-training resumes from its last epoch. Under ``torchrun`` the cells are shared
    among the ranks and rank 0 writes the reports.

    Args:
        budget: a budget of the sweep (default: its ``default_budget``, else its first).
        seeds: meta-seeds: a count (``0 .. n-1``) or a list; default: the budget's count.
        device: ``auto``, ``cpu``, ``cuda`` (under torchrun: each rank's own GPU).
        threads: intra-op threads of this process while the sweep runs (default: the thread
            policy, see ``phys_l2o.parallel``); the caller's count is given back at the end.
        compile: compile the learned optimizers' steps; ``None``: for cells with at least
            ``COMPILE_FROM_TRAJECTORIES`` meta-training trajectories, when a C++ compiler is
            found and the optimizer can be compiled.
        overrides: budget fields to change (e.g. ``{"meta_batch": 4}``).
        overwrite: start again in an ``out`` that holds another run.
        protocol: ``corrected`` (this project's) or ``reference`` (the original code's); see
            ``phys_l2o.protocols``.
        max_seeds: ``{variant: n}``: run only the first ``n`` seeds of a costly variant.

    Returns:
        The report (``results.json``'s contents) on rank 0, ``None`` on other ranks.

    Raises:
        SweepError: a bad sweep, budget or seeds, or an ``out`` that holds another run.
        MetaTrainingInterrupted: on Ctrl-C; finished cells and the training state of the cell
            in progress are on disk, and the same call continues.
    """
    from . import parallel

    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    plan = make_plan(sweep, budget, out=out, seeds=seeds, overrides=overrides, protocol=protocol,
                     max_seeds=max_seeds)
    with parallel.thread_policy(threads) as count:
        return _run(plan, count, device=device, data_root=data_root, compile=compile,
                    overwrite=overwrite, progress=progress, command=command)


def _run(plan: Plan, count: int, *, device, data_root, compile, overwrite, progress,
         command) -> dict | None:
    from . import parallel
    from .reporting.results import provenance
    from .seeding import resolve_device

    sweep = plan.sweep
    if compile:
        blocked = {v.name: pieces for v in sweep.variants
                   if (pieces := build(plan.setup(v)[0], "optimizer").uncompilable_pieces())}
        if blocked:
            raise SweepError(f"--compile: these variants cannot be compiled: {blocked}; leave "
                             "--compile out (the default compiles the variants that can be)")
    with parallel.joined(resolve_device(device)) as (ranks, device):
        mode = check_folder(plan, overwrite)
        parallel.barrier(ranks)  # every rank has checked its folder before any is changed
        if ranks.local_rank == 0:  # each machine prepares its own --out
            prepare_folder(plan, mode)
        parallel.barrier(ranks)
        started = time.perf_counter()
        cells = sweep.cells(plan.seeds, plan.max_seeds)
        done = {c: r for c in cells if (r := read_cell(plan, c)) is not None}
        reused = len(done)
        todo = [c for c in cells if c not in done]
        parallel.barrier(ranks)  # every rank has read the same finished cells
        mine = [c for i, c in enumerate(todo) if ranks.mine(i)]
        info = provenance(command)
        versions = {k: info[k] for k in ("version", "commit", "dirty", "torch")}
        runner = Runner(plan, device=device, data_root=data_root, compile=compile,
                        threads=count, versions=versions) if mine or ranks.main else None
        if runner is not None and ranks.main:
            for note in runner.notes:
                print(f"note: {note}")
        if ranks.main:
            where = f" on {ranks.world} processes" if ranks.world > 1 else ""
            seeds = (f"{len(sweep.variants)} variants x {plural(len(plan.seeds), 'seed')}"
                     if not plan.max_seeds else ", ".join(
                         f"{v.name} x {plural(sum(c.method == v.name for c in cells), 'seed')}"
                         for v in sweep.variants))
            print(f"sweep {sweep.name!r}, budget {plan.budget!r}, protocol {plan.protocol!r}: "
                  f"{len(cells)} cells ({seeds}, "
                  f"{plural(len(sweep.baselines()), 'baseline')}); {reused} finished cells reused, "
                  f"{len(todo)} to run{where}; {count} thread(s) per process")
        from tqdm.auto import tqdm

        desc = sweep.name if ranks.world == 1 else f"{sweep.name} (rank 0 of {ranks.world})"
        bar = tqdm(total=reused + len(mine), initial=reused, unit="cell", desc=desc,
                   disable=not (progress and ranks.main), dynamic_ncols=True)
        fresh = {}
        try:
            for cell in mine:
                bar.set_postfix_str(str(cell))
                record = runner.run(cell)
                record["rank"] = ranks.rank
                write_cell(plan, cell, record)
                log_line(plan, cell, record)
                fresh[cell] = record
                bar.update(1)
        finally:
            bar.close()
        gathered = parallel.gather({(c.method, c.seed): r for c, r in fresh.items()}, ranks)
        if not ranks.main:
            return None
        for part in gathered:
            for (method, seed), record in part.items():
                cell = Cell(method, seed)
                done[cell] = record
                if read_cell(plan, cell) is None:  # another machine's cell: keep a copy here
                    write_cell(plan, cell, record)
        from .reporting.report import write_reports

        meta = {**info, "budget": plan.budget, "sizes": plan.sizes, "seeds": plan.seeds,
                "device": str(device), "threads": count, "processes": ranks.world,
                "reused_cells": reused, "seconds": time.perf_counter() - started,
                "data_notes": runner.notes if runner else []}
        return write_reports(plan, [done[c] for c in cells], meta)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def log_line(plan: Plan, cell: Cell, record: dict) -> None:
    """One line per finished cell in ``OUT/sweep.log``."""
    from .reporting.results import as_losses

    finals = "; ".join(f"{label} {np.mean(as_losses(t['final'])):.4g}"
                       for label, t in record["targets"].items())
    train = record.get("meta_training")
    extra = "" if train is None else (f"; best validation {train['best_validation']:.4g} at "
                                      f"epoch {train['best_epoch']}")
    line = (f"{time.strftime('%Y-%m-%d %H:%M:%S')} rank {record.get('rank', 0)} {cell}: "
            f"mean final loss {finals}{extra}; {record['seconds']:.1f} s\n")
    with open(plan.out / "sweep.log", "a") as log:
        log.write(line)
