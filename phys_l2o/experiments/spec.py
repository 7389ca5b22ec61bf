"""The sweep file format: an experiment as data, parsed and checked into a ``Sweep``.

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
    tuned = ["adam"]    # also "adam-tuned": its learning rate chosen on tuning problems

    [[variants]]
    name = "hnn (paper)"
    optimizer = { type = "hnn", out_mul = 0.001 }
    unroll = 15
    meta_lr = 0.01

A sweep is split into *cells* (``Cell``): one per (variant, meta-seed), a meta-training
followed by the evaluation of the best weights on every target, and one per baseline. A
target's ``tuned`` baselines run again as ``NAME-tuned``: every learning rate of the sweep's
``tuning_grid`` (default ``meta.tuning.GRID``) on the budget's ``tuning_problems`` (default: its
``test_problems``) problems of their own, drawn apart from the test problems (from the training
task's pool where it has one); the rate with the lowest mean final loss there is then evaluated
on the test problems like every other method.
``load_sweep`` reads a file through ``compose.expand`` (includes, variant defaults, bases);
``plan`` fixes a budget and seeds, ``runner`` carries the cells out into a ``folder``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from ..checks import positive_int, positive_number
from ..meta import Schedule
from ..meta.tuning import GRID, check_grid
from ..registry import Spec, as_spec, build, lookup, plain_data
from .compose import expand
from .protocols import REPORTED_LOSSES

#: the schedule fields a variant may set (the budget gives the others).
SCHEDULE_FIELDS = ("epochs", "trajectories", "meta_batch", "steps", "unroll", "meta_lr",
                   "validation_problems", "loss_window", "validation_pool", "objective")
#: what a variant may set besides its name, its optimizer and schedule fields: the ``out_mul``
#: it is evaluated with, when not the one it was meta-trained with, and the estimator it is
#: meta-trained with (a spec of kind ``estimator``; default: truncated backpropagation).
VARIANT_FIELDS = ("test_out_mul", "estimator")
#: what every budget gives.
BUDGET_FIELDS = ("epochs", "trajectories", "meta_batch", "validation_problems",
                 "test_problems", "steps", "seeds")
#: what a budget may also give: the problems each learning rate of a tuned baseline is tried on.
OPTIONAL_BUDGET_FIELDS = ("tuning_problems",)
#: the name of a tuned baseline: ``TUNED.format(name)``.
TUNED = "{}-tuned"
#: the top-level keys of a sweep file.
TOP_KEYS = ("name", "title", "description", "reference", "train", "targets", "variants",
            "budgets", "default_budget", "test_seed", "monitor", "reported_loss",
            "tuning_grid")


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
    """An evaluation target: a task, the baselines run on it, the baselines also run tuned
    (``tuned``: ``{"adam-tuned": "adam"}``, the tuned name of each and the baseline whose spec
    it tunes), and optionally a title and the paper's numbers for the table."""

    label: str
    task: Spec
    baselines: dict[str, Spec] = field(default_factory=dict)
    title: str | None = None
    paper: dict[str, float] = field(default_factory=dict)
    tuned: dict[str, str] = field(default_factory=dict)

    def baseline(self, method: str) -> Spec | None:
        """The spec ``method`` runs on this target (a tuned baseline's without its learning
        rate), or ``None`` where the target does not run it."""
        if method in self.tuned:
            return {k: v for k, v in self.baselines[self.tuned[method]].items() if k != "lr"}
        return self.baselines.get(method)


@dataclass(frozen=True)
class Cell:
    """One unit of work: a variant with one meta-seed, or a baseline (``seed`` is ``None``)."""

    method: str
    seed: int | None

    @property
    def learned(self) -> bool:
        return self.seed is not None

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
    tuning_grid: tuple[float, ...] = GRID

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
        if "/" in name or "\\" in name or name.strip(".") == "" or name != name.strip():
            raise SweepError(f"{where}: name {name!r} must be a plain name (it is the default "
                             "output folder, runs/NAME): no path separators, no leading or "
                             "trailing spaces, not . or ..")
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
        baselines = {b for t in targets for b in [*t.baselines, *t.tuned]}
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
        try:
            grid = check_grid(data.get("tuning_grid", list(GRID)), f"{where}: tuning_grid")
        except ValueError as error:
            raise SweepError(str(error)) from None
        return cls(name=name, train=train, targets=targets, variants=variants, budgets=budgets,
                   title=str(data.get("title", name)), description=str(data.get("description",
                                                                               "")),
                   reference=reference, default_budget=default_budget, test_seed=test_seed,
                   monitor=tuple(monitor), reported_loss=reported, tuning_grid=grid)

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
        if self.tuning_grid != GRID:
            out["tuning_grid"] = list(self.tuning_grid)
        out["train"] = self.train
        out["budgets"] = {k: dict(v) for k, v in self.budgets.items()}
        out["targets"] = {}
        for t in self.targets:
            entry: dict[str, Any] = {"task": t.task}
            if t.title:
                entry["title"] = t.title
            if t.baselines:
                entry["baselines"] = dict(t.baselines)
            if t.tuned:
                entry["tuned"] = list(t.tuned.values())
            if t.paper:
                entry["paper"] = dict(t.paper)
            out["targets"][t.label] = entry
        out["variants"] = [{"name": v.name, "optimizer": v.optimizer, **v.settings}
                           for v in self.variants]
        return plain_data(out, self.name)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def budget(self, name: str | None = None) -> tuple[str, dict[str, int]]:
        """The budget called ``name`` (default: ``default_budget``, else the first)."""
        name = name or self.default_budget or next(iter(self.budgets))
        if name not in self.budgets:
            raise SweepError(f"sweep {self.name!r} has no budget {name!r}; its budgets: "
                             f"{', '.join(sorted(self.budgets))}")
        return name, dict(self.budgets[name])

    def baselines(self) -> list[str]:
        """Every baseline's name, in the order the targets list them, then the tuned ones."""
        return list(dict.fromkeys([*(b for t in self.targets for b in t.baselines),
                                   *(b for t in self.targets for b in t.tuned)]))

    def cells(self, seeds: list[int], max_seeds: Mapping[str, int] | None = None) -> list[Cell]:
        """The work: every variant with every seed (variant-major; a variant named in
        ``max_seeds`` with the first that many only), then every baseline."""
        limit = dict(max_seeds or {})
        return ([Cell(v.name, s) for v in self.variants
                 for s in seeds[:limit.get(v.name, len(seeds))]]
                + [Cell(b, None) for b in self.baselines()])

    def variant(self, name: str) -> Variant:
        """The variant called ``name``."""
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
    unknown = sorted(set(sizes) - set(BUDGET_FIELDS) - set(OPTIONAL_BUDGET_FIELDS))
    if missing or unknown:
        raise SweepError(f"{where}: a budget gives exactly {list(BUDGET_FIELDS)}, and "
                         f"optionally {list(OPTIONAL_BUDGET_FIELDS)}"
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
    unknown = sorted(set(table) - {"task", "baselines", "tuned", "title", "paper"})
    if unknown or "task" not in table:
        raise SweepError(f"{where}: a target holds `task` (a task spec) and optionally "
                         "`baselines`, `tuned`, `title` and `paper`"
                         + (f"; unknown {unknown}" if unknown else "; `task` is missing"))
    baselines = {str(name): _spec(spec, "baseline", f"{where}: baselines.{name}")
                 for name, spec in _table(table.get("baselines", {}),
                                          f"{where}: baselines").items()}
    for name, spec in baselines.items():
        try:
            build(spec, "baseline")  # a bad learning rate fails here
        except (ValueError, TypeError) as error:
            raise SweepError(f"{where}: baselines.{name}: {error}") from None
    tuned = table.get("tuned", [])
    if not isinstance(tuned, list) or any(name not in baselines for name in tuned):
        raise SweepError(f"{where}: tuned must list baselines of this target to run again with "
                         f"a tuned learning rate, among {sorted(baselines)}; got {tuned!r}")
    if any("lr" not in baselines[name] for name in tuned):
        raise SweepError(f"{where}: tuned: a tuned baseline's spec must set `lr` (the rate "
                         "that tuning replaces)")
    paper = {str(k): float(v) for k, v in _table(table.get("paper", {}),
                                                  f"{where}: paper").items()}
    return Target(label, _spec(table["task"], "task", f"{where}: task"), baselines,
                  table.get("title"), paper, {TUNED.format(name): name for name in tuned})


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
        Schedule(**{k: v for k, v in table.items() if k in SCHEDULE_FIELDS})
        if "test_out_mul" in table:
            positive_number("test_out_mul", table["test_out_mul"])
        if "estimator" in table:
            table["estimator"] = _spec(table["estimator"], "estimator", f"{where}: estimator")
            build(table["estimator"], "estimator")
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
        data = expand(path)
    except ValueError as error:
        raise SweepError(str(error)) from None
    return Sweep.from_dict(data, str(path))
