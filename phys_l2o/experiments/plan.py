"""A plan: what one run of a sweep does (its budget, seeds and sizes, its protocol) and where it
writes; and the one rule that turns budget sizes and variant settings into a ``Schedule``."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checks import positive_int
from ..meta import Schedule
from ..registry import Spec
from .folder import FORMAT, RunFolder
from .protocols import check_protocol, reported_loss, variant_under
from .spec import BUDGET_FIELDS, SCHEDULE_FIELDS, Cell, Sweep, SweepError, Variant

#: the meta-training settings of a variant that sets none of its own.
DEFAULT_META = {"unroll": 15, "meta_lr": 0.01}


def schedule_for(sizes: Mapping[str, Any], settings: Mapping[str, Any] = (),
                 **overrides: Any) -> Schedule:
    """The schedule of a variant: the budget's ``sizes`` (its schedule fields), then
    ``DEFAULT_META``, then the variant's ``settings``, then ``overrides`` that are not ``None``
    (schedule fields only; another key is a ``TypeError`` of ``Schedule``)."""
    fields = {k: sizes[k] for k in SCHEDULE_FIELDS if k in sizes}
    fields.update(DEFAULT_META)
    fields.update({k: v for k, v in dict(settings).items() if k in SCHEDULE_FIELDS})
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return Schedule(**fields)


@dataclass
class Plan:
    """What a run does: the sweep, its budget, seeds and sizes, its protocol (see
    ``experiments.protocols``), and where it writes."""

    sweep: Sweep
    budget: str
    sizes: dict[str, int]
    seeds: list[int]
    out: Path
    protocol: str = "corrected"
    max_seeds: dict[str, int] = field(default_factory=dict)

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.out)

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

    def earlier(self) -> Plan | None:
        """The plan of the run that ``out`` holds, from its ``sweep.json`` (its sweep, budget,
        sizes and protocol; this plan's seeds); ``None`` where there is none or it cannot be
        read as a sweep of this version. It tells what a record written before records said
        what they depend on did depend on."""
        try:
            theirs = json.loads(self.folder.manifest_path.read_text())
            sweep = Sweep.from_dict(theirs["sweep"], "the earlier run's sweep.json")
            return Plan(sweep, theirs["budget"], dict(theirs["sizes"]), self.seeds, self.out,
                        theirs.get("protocol", "corrected"), self.max_seeds)
        except (OSError, ValueError, KeyError, TypeError, SweepError):
            return None

    def cells(self) -> list[Cell]:
        """The cells of the run (see ``Sweep.cells``)."""
        return self.sweep.cells(self.seeds, self.max_seeds)

    @property
    def tuning_problems(self) -> int:
        """The problems each learning rate of a tuned baseline is tried on."""
        return self.sizes.get("tuning_problems", self.sizes["test_problems"])

    def depends(self, cell: Cell) -> str:
        """What ``cell``'s record depends on, as a short hash: the training task, every
        target's task (a record holds all targets), the cell's optimizer spec and settings
        (a learned cell's schedule and seed; a baseline's spec on each target, a tuned one's grid
        and tuning problems), the test sizes
        and seed, and the protocol. A finished cell whose hash is unchanged is reused when the
        sweep file changes otherwise (a title, another variant)."""
        sweep = self.sweep
        what: dict[str, Any] = {
            "targets": {t.label: t.task for t in sweep.targets},
            "steps": self.sizes["steps"], "test_problems": self.sizes["test_problems"],
            "test_seed": sweep.test_seed, "protocol": self.protocol,
            "reported_loss": self.reported_loss, "seed": cell.seed}
        if cell.seed is None:  # a baseline: its spec on each target that runs it
            what["baseline"] = {t.label: spec for t in sweep.targets
                                if (spec := t.baseline(cell.method)) is not None}
            if any(cell.method in t.tuned for t in sweep.targets):
                what["tuning"] = {"grid": sweep.tuning_grid, "problems": self.tuning_problems}
        else:
            variant = sweep.variant(cell.method)
            spec, settings = self.setup(variant)
            what.update(train=sweep.train, optimizer=spec, settings=settings,
                        schedule=self.schedule(variant).to_dict(),
                        validation_problems=self.sizes.get("validation_problems"),
                        monitor=[label for label in sweep.monitor])
        text = json.dumps(what, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def setup(self, variant: Variant) -> tuple[Spec, dict[str, Any]]:
        """The variant's optimizer spec and settings under the plan's protocol."""
        return variant_under(self.protocol, variant.optimizer, variant.settings)

    def schedule(self, variant: Variant) -> Schedule:
        """The variant's meta-training schedule under the plan's budget and protocol."""
        return schedule_for(self.sizes, self.setup(variant)[1])


def make_plan(sweep: Sweep, budget: str | None = None, *, out: str | os.PathLike,
              seeds: int | list[int] | None = None,
              overrides: Mapping[str, int | None] | None = None, protocol: str = "corrected",
              max_seeds: Mapping[str, int] | None = None) -> Plan:
    """The budget's sizes with ``overrides`` (budget fields) applied, and the seeds: a count
    (``0 .. n-1``), a list, or ``None`` for the budget's ``seeds``; ``protocol``: see
    ``experiments.protocols``; ``max_seeds``: variants that run only the first that many seeds
    (a costly one).

    Raises:
        SweepError: an unknown budget, override, protocol or variant; bad seeds.
    """
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
