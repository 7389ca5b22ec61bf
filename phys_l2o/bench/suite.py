"""A benchmark suite: tasks kept out of meta-training, the seeds they run on, and how the
hand-designed baselines are tuned on each (the file format is ``heldout.toml``'s).

``load_suite("heldout")`` reads the suite shipped with the package; a path reads a file of the
same form. ``check_not_heldout(task)`` is the check that keeps a meta-training run off the
held-out tasks.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..config import load_toml
from ..meta.tuning import GRID, check_grid
from ..registry import Spec, as_spec, lookup, registered, spec_of
from ..tasks.base import build_task

#: the suites shipped with the package, by name.
SUITES = {"heldout": "heldout.toml"}
#: the keys of a suite file (and of its tables).
SUITE_KEYS = {"name", "description", "seeds", "tuning_seeds", "reference", "tuning",
              "untuned", "tasks"}
TUNING_KEYS = {"baselines", "grid"}
#: the steps of a task whose spec does not say.
DEFAULT_STEPS = 100


class SuiteError(ValueError):
    """A suite file that cannot be run as it is."""


@dataclass(frozen=True)
class SuiteTask:
    """One task of a suite: its name, its spec (without ``steps``) and its steps."""

    name: str
    spec: Spec
    steps: int


@dataclass(frozen=True)
class Suite:
    """A held-out suite (see ``heldout.toml`` for the meaning of each field)."""

    name: str
    description: str
    tasks: tuple[SuiteTask, ...]
    seeds: int = 5
    tuning_seeds: int = 3
    reference: str = "adam"
    baselines: tuple[str, ...] = ("adam", "sgd", "rmsprop")
    grid: tuple[float, ...] = GRID
    untuned: dict[str, Spec] = field(default_factory=dict)
    source: str = ""

    def task(self, name: str) -> SuiteTask:
        for task in self.tasks:
            if task.name == name:
                return task
        raise SuiteError(f"suite {self.name!r} has no task {name!r}; its tasks are "
                         f"{[t.name for t in self.tasks]}")

    def subset(self, names: list[str]) -> Suite:
        """The suite restricted to the tasks ``names`` (in the suite's order)."""
        chosen = {self.task(n).name for n in names}
        tasks = tuple(t for t in self.tasks if t.name in chosen)
        return dataclasses.replace(self, tasks=tasks, description=f"{self.description} "
                                   f"(this run: {len(tasks)} of its tasks)")


def _suite_path(name_or_path: str | os.PathLike) -> tuple[str, Path | None]:
    if str(name_or_path) in SUITES:
        return str(name_or_path), None
    path = Path(name_or_path)
    if not path.is_file():
        raise SuiteError(f"no suite {str(name_or_path)!r}: give a shipped suite "
                         f"({', '.join(SUITES)}) or the path of a suite file (TOML)")
    return str(path), path


def load_suite(name_or_path: str | os.PathLike = "heldout") -> Suite:
    """The suite shipped under ``name`` (``"heldout"``), or the suite file at a path.

    Raises:
        SuiteError: an unknown name, a missing file, or a file that is not a suite (unknown
            keys, a task that is not a registered task, bad seeds or grid).
    """
    source, path = _suite_path(name_or_path)
    return shipped_suite(source) if path is None else parse_suite(load_toml(path), source)


@cache
def shipped_suite(name: str) -> Suite:
    """The suite shipped under ``name``, read once per process (meta-training checks every
    task against it)."""
    with resources.as_file(resources.files(__package__).joinpath(SUITES[name])) as f:
        return parse_suite(load_toml(f), name)


def _fail(source: str, message: str) -> SuiteError:
    return SuiteError(f"suite {source}: {message}")


def _count(data: dict, key: str, default: int, source: str) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(source, f"{key} must be a positive integer, got {value!r}")
    return value


def parse_suite(data: dict[str, Any], source: str = "<suite>") -> Suite:
    """A ``Suite`` from the tables of a suite file, checked (see ``load_suite``)."""
    unknown = sorted(set(data) - SUITE_KEYS)
    if unknown:
        raise _fail(source, f"unknown keys {unknown}; a suite holds {sorted(SUITE_KEYS)}")
    tables = data.get("tasks")
    if not isinstance(tables, dict) or not tables:
        raise _fail(source, "no [tasks.NAME] tables: a suite needs at least one task")
    tuning = data.get("tuning", {})
    if not isinstance(tuning, dict) or set(tuning) - TUNING_KEYS:
        raise _fail(source, f"[tuning] holds {sorted(TUNING_KEYS)} only")
    baselines = tuple(tuning.get("baselines", Suite.baselines))
    known = registered("baseline")
    for name in baselines:
        if name not in known:
            raise _fail(source, f"[tuning] baselines: {name!r} is not a baseline; choose "
                        f"from {sorted(known)}")
    try:
        grid = check_grid(tuning.get("grid", list(Suite.grid)), "[tuning] grid")
    except ValueError as error:
        raise _fail(source, str(error)) from None
    reference = data.get("reference", "adam")
    if reference not in baselines:
        raise _fail(source, f"reference {reference!r} must be one of the tuned baselines "
                    f"{list(baselines)}")
    untuned = {}
    for name, spec in data.get("untuned", {}).items():
        spec = as_spec(spec)
        if spec["type"] not in known or name in baselines:
            raise _fail(source, f"[untuned] {name}: a baseline spec under a new name, "
                        f"got {spec}")
        untuned[name] = spec
    tasks = []
    for name, table in tables.items():
        if not isinstance(table, dict) or "type" not in table:
            raise _fail(source, f"[tasks.{name}] must be a task spec with a type")
        spec = dict(table)
        steps = spec.pop("steps", DEFAULT_STEPS)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise _fail(source, f"[tasks.{name}] steps must be a positive integer")
        try:
            lookup(spec["type"], "task")
        except ValueError as error:
            raise _fail(source, f"[tasks.{name}]: {error}") from None
        tasks.append(SuiteTask(name, spec, steps))
    return Suite(name=str(data.get("name", source)), description=str(data.get(
        "description", "")), tasks=tuple(tasks), seeds=_count(data, "seeds", 5, source),
        tuning_seeds=_count(data, "tuning_seeds", 3, source), reference=reference,
        baselines=baselines, grid=grid, untuned=untuned, source=source)


# --------------------------------------------------------------------------------- held out

#: options that do not make another task: how long a problem runs and how many examples a
#: step sees. A task that differs from a held-out one in these only is still held out.
SAME_TASK_OPTIONS = ("steps", "batch_size")


def task_identity(spec: Spec | str) -> Spec:
    """A task spec with every option filled in from its class's defaults, without the
    options in ``SAME_TASK_OPTIONS`` and the context (data folder, device): what two specs of
    the same task have in common."""
    import inspect

    spec = as_spec(spec)
    cls = lookup(spec["type"], "task")
    full: Spec = {}
    for name, param in list(inspect.signature(cls.__init__).parameters.items())[1:]:
        if param.default is not inspect.Parameter.empty and param.kind in (
                param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            full[name] = param.default
    full.update(spec)
    for name in (*SAME_TASK_OPTIONS, *getattr(cls, "_spec_context", ())):
        full.pop(name, None)
    return full


def check_not_heldout(task: Any, suite: Suite | None = None) -> None:
    """Refuse a task (an object or a spec) of the held-out suite as a meta-training task.

    Raises:
        SuiteError: ``task`` is a task of ``suite`` (default: the shipped held-out suite), up
            to its steps and minibatch size.
    """
    from ..registry import is_registered

    if not isinstance(task, (str, dict)) and not is_registered(task):
        return  # not a registered family (a ModuleTask of the user's): not a suite task
    suite = suite or load_suite("heldout")
    spec = task if isinstance(task, (str, dict)) else spec_of(task)
    mine = task_identity(spec)
    for held in suite.tasks:
        if task_identity(held.spec) == mine:
            raise SuiteError(f"task {spec} is the held-out task {held.name!r} of suite "
                             f"{suite.name!r}: meta-training on it would make its scores "
                             "meaningless. Meta-train on another task (another model, data "
                             "set or size)")


def build_suite_task(task: SuiteTask, **context: Any):
    """Build a suite task where it runs (``data_root``, ``device``, ``download``)."""
    return build_task(task.spec, task.steps, **context)


__all__ = ["Suite", "SuiteError", "SuiteTask", "build_suite_task", "check_not_heldout",
           "load_suite", "parse_suite", "task_identity"]
