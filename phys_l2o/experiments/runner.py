"""The one runner of sweeps: ``run_sweep`` (``phys-l2o sweep FILE``) and ``reproduce``
(``phys-l2o reproduce TASK``, the paper's sweep file of a task).

A run splits its plan into cells and writes every cell's record into the run folder the moment
it finishes, atomically; a learned cell also writes its checkpoint beside it and, while it
trains, its training state (see ``experiments.folder``). Running the same sweep on the same
``out`` again resumes: finished cells are read back, a cell that was meta-training goes on from
its last epoch.

The cells to run become *jobs* (``group_jobs``): the seeds of a learned variant that can run as
one program are meta-trained together (``meta.group``; each still writes its own record), every
other cell is a job of its own. Jobs are ordered longest-expected first (``expected_cost``:
meta-training before evaluation, the most optimizee steps first), so that a long job never runs
alone at the end, and handed to an engine (``experiments.engines``): ``local`` runs them here,
in ``workers`` worker processes of one thread each (by default, in a run of one process on the
CPU, as many as its cores allow), each taking the next job when it is free; ``ray`` submits
each job as a Ray task, on this machine or a Ray cluster. The records come back to the one
process of the run, which writes them and the reports (``experiments.report``). A cell's record
is the same whichever process runs it: its seeds are its own. (``torchrun`` is for one
meta-training run over processes, ``phys-l2o train``; a sweep refuses it.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import parallel
from ..meta.group import groupable
from ..optimizers.base import advance
from ..optimizers.stacked import Stacked
from ..registry import as_spec, build
from ..reporting.results import as_losses, provenance
from ..seeding import resolve_device
from ..tasks.base import Task, build_task
from .cells import Job, Runner
from .engines import ENGINES, default_workers, run_local, run_ray
from .paper import paper_sweep
from .plan import Plan, make_plan
from .report import write_reports
from .spec import Cell, Sweep, SweepError, load_sweep


def run_sweep(sweep: Sweep | str | os.PathLike, budget: str | None = None, *,
              out: str | os.PathLike, seeds: int | list[int] | None = None,
              device: str | torch.device | None = "auto", threads: int | None = None,
              data_root: str | None = None, compile: bool | None = None,
              overrides: Mapping[str, int | None] | None = None, overwrite: bool = False,
              progress: bool = True, command: str | None = None,
              protocol: str = "corrected",
              max_seeds: Mapping[str, int] | None = None,
              workers: int | None = None, group: bool = True, engine: str = "local",
              address: str | None = None) -> dict | None:
    """Run a sweep (a ``Sweep`` or a sweep file) into ``out`` and write its reports.

    Finished cells already in ``out`` (of the same sweep and budget) are reused; a cell that
    was meta-training resumes from its last epoch.

    Args:
        budget: a budget of the sweep (default: its ``default_budget``, else its first).
        seeds: meta-seeds: a count (``0 .. n-1``) or a list; default: the budget's count.
        device: ``auto``, ``cpu``, ``cuda``.
        threads: intra-op threads of this process while the sweep runs (default: the thread
            policy, see ``phys_l2o.parallel``); the caller's count is given back at the end.
        compile: compile the learned optimizers' steps; ``None``: see
            ``experiments.training.use_compile``.
        overrides: budget fields to change (e.g. ``{"meta_batch": 4}``).
        overwrite: start again in an ``out`` that holds another run.
        protocol: ``corrected`` (this project's) or ``reference`` (the original code's); see
            ``experiments.protocols``.
        max_seeds: ``{variant: n}``: run only the first ``n`` seeds of a costly variant.
        workers: worker processes that run this process's cells (default:
            ``default_workers``); 1 runs them one after another in this process.
        group: meta-train the seeds of a variant as one program where they can
            (``group_jobs``); ``False``: every cell alone.
        engine: ``local`` (this machine's worker processes) or ``ray`` (Ray tasks; see
            ``experiments.engines``). With ``ray``, ``workers`` jobs run at once on a Ray
            instance started here (default: as many as the cores allow).
        address: with ``engine="ray"``, the Ray cluster to join (``auto``, ``HOST:PORT``);
            default: ``RAY_ADDRESS``, else a Ray instance started on this machine.

    Returns:
        The report (``results.json``'s contents).

    Raises:
        SweepError: a bad sweep, budget, seeds, workers or engine, an ``out`` that holds
            another run, ``engine="ray"`` without Ray installed, or a launch by torchrun.
        KeyboardInterrupt: on Ctrl-C (``MetaTrainingInterrupted`` when the cell was
            meta-training in this process); finished cells and the training states of the
            cells in progress are on disk, and the same call continues.
    """
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    plan = make_plan(sweep, budget, out=out, seeds=seeds, overrides=overrides, protocol=protocol,
                     max_seeds=max_seeds)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise SweepError(f"workers must be a positive integer, got {workers!r}")
    if engine not in ENGINES:
        raise SweepError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
    if address is not None and engine != "ray":
        raise SweepError("an address is a Ray cluster's: give it with engine 'ray'")
    with parallel.thread_policy(threads) as count:
        return _run(plan, count, device=device, data_root=data_root, compile=compile,
                    overwrite=overwrite, progress=progress, command=command, workers=workers,
                    group=group, engine=engine, address=address)


def reproduce(task: str, budget: str = "smoke", *, out: str | os.PathLike, seed: int = 0,
              seeds: int = 1, meta_batch: int | None = None, **options: Any) -> dict | None:
    """Run one of the paper's experiments (its sweep file, ``paper_sweep(task)``) end to end
    and write its reports into ``out``: meta-seeds ``seed .. seed + seeds - 1``, ``meta_batch``
    problems per trajectory (default: the budget's). ``options`` are ``run_sweep``'s."""
    return run_sweep(paper_sweep(task), budget, out=out, seeds=list(range(seed, seed + seeds)),
                     overrides={"meta_batch": meta_batch}, **options)


def expected_cost(plan: Plan, cell: Cell, step_seconds: Mapping[str, float] | None = None
                  ) -> float:
    """A cell's expected cost, to order cells by: a learned cell's optimizee steps of
    meta-training (epochs x trajectories x meta-batch x steps), times its population for an
    evolution-strategies estimator, times the seconds of one of its variant's steps where
    ``step_seconds`` gives them (``step_seconds``: the LSTM's step on MNIST costs several HNN
    steps); 0 for a baseline (it only evaluates)."""
    if not cell.learned:
        return 0
    variant = plan.sweep.variant(cell.method)
    schedule = plan.schedule(variant)
    estimator = plan.setup(variant)[1].get("estimator")
    population = estimator.get("population", 1) if isinstance(estimator, Mapping) else 1
    return (schedule.epochs * schedule.trajectories * schedule.meta_batch * schedule.steps
            * population * (step_seconds or {}).get(cell.method, 1.0))


def step_seconds(plan: Plan, methods: Sequence[str], task: Task, steps: int = 3
                 ) -> dict[str, float]:
    """Seconds of one step (the optimizer's and the task's gradient) of each learned variant
    of ``methods`` on one problem of ``task``, timed in this process (eager, after one
    warm-up step): what makes one variant's cells costlier than another's."""
    problems = task.sample(1, torch.Generator().manual_seed(0))
    out = {}
    with torch.no_grad():
        for method in dict.fromkeys(methods):
            optimizer = build(plan.setup(plan.sweep.variant(method))[0], "optimizer")
            params = task.init_params(problems)
            state = optimizer.init_state(params, task.segments)
            _, grad = task.loss_and_grad(params, problems, 0)
            for t in range(steps + 1):
                if t == 1:
                    began = time.perf_counter()
                params, state = advance(optimizer, params, grad, state)
                _, grad = task.loss_and_grad(params, problems, t + 1)
            out[method] = (time.perf_counter() - began) / steps
    return out


def can_group(plan: Plan, method: str, train_task: Task) -> bool:
    """Whether the seeds of variant ``method`` can be meta-trained as one group: truncated
    backpropagation (no estimator), a task whose trajectories all run the same steps
    (``meta.group.groupable``) and an optimizer whose step ``vmap`` runs
    (``Stacked.vectorizable``)."""
    variant = plan.sweep.variant(method)
    spec, settings = plan.setup(variant)
    return (settings.get("estimator") is None and groupable(train_task)
            and Stacked.vectorizable(build(spec, "optimizer")))


def group_jobs(plan: Plan, cells: Sequence[Cell], workers: int, train_task: Task | None,
               costs: Mapping[str, float] | None = None) -> list[Job]:
    """The jobs of ``cells``, ordered longest first (``expected_cost`` with the ``costs`` of
    ``step_seconds``): the learned cells of a variant that ``can_group`` become groups of
    seeds, split so that every one of ``workers`` has a job where there are enough seeds;
    every other cell is a job of its own. ``train_task`` is ``None`` for no groups."""
    singles = [(c,) for c in cells if train_task is None or not c.learned]
    by_method: dict[str, list[Cell]] = {}
    for cell in cells:
        if train_task is not None and cell.learned:
            by_method.setdefault(cell.method, []).append(cell)
    grouped = [m for m, mine in by_method.items()
               if len(mine) > 1 and can_group(plan, m, train_task)]
    parts = max(1, -(-workers // max(1, len(grouped))))
    jobs: list[Job] = []
    for method, mine in by_method.items():
        if method not in grouped:
            jobs += [(c,) for c in mine]
            continue
        count = min(parts, len(mine))
        jobs += [tuple(mine[k::count]) for k in range(count)]
    jobs += singles
    return sorted(jobs, key=lambda job: -sum(expected_cost(plan, c, costs) for c in job))


def check_builds(plan: Plan, data_root: str | None) -> None:
    """Build every task, learned optimizer, estimator and baseline of ``plan`` once, before
    anything is written: a bad option is found here, and its message names the table.

    Raises:
        SweepError: a part that cannot be built (the sweep, the table and the reason).
    """
    sweep, steps = plan.sweep, plan.sizes["steps"]
    context = {"data_root": data_root, "device": torch.device("cpu")}  # built to be checked

    def attempt(where: str, make: Any) -> None:
        try:
            make()
        except SweepError:
            raise
        except (ValueError, TypeError, KeyError) as error:  # SpecErrors are ValueErrors
            raise SweepError(f"sweep {sweep.name!r}, {where}: {error}") from None

    attempt("[train] task", lambda: build_task(sweep.train, steps, **context))
    for t in sweep.targets:
        if as_spec(t.task) != as_spec(sweep.train):
            attempt(f"[targets.{t.label}] task",
                    lambda t=t: build_task(t.task, steps, **context))
        for name, spec in t.baselines.items():
            attempt(f"[targets.{t.label}] baseline {name!r}",
                    lambda spec=spec: build(spec, "baseline"))
        for name in t.tuned:
            for lr in (min(sweep.tuning_grid), max(sweep.tuning_grid)):
                spec = {**t.baseline(name), "lr": lr}
                attempt(f"[targets.{t.label}] tuned baseline {name!r} at lr {lr:g}",
                        lambda spec=spec: build(spec, "baseline"))
    for v in sweep.variants:
        attempt(f"variant {v.name!r}", lambda v=v: build(plan.setup(v)[0], "optimizer"))
        estimator = plan.setup(v)[1].get("estimator")
        if estimator is not None:
            attempt(f"variant {v.name!r}: estimator",
                    lambda e=estimator: build(e, "estimator"))


def _run(plan: Plan, count: int, *, device, data_root, compile, overwrite, progress,
         command, workers: int | None = None, group: bool = True,
         engine: str = "local", address: str | None = None) -> dict | None:
    sweep, folder = plan.sweep, plan.folder
    check_builds(plan, data_root)
    if compile:
        blocked = {v.name: pieces for v in sweep.variants
                   if (pieces := build(plan.setup(v)[0], "optimizer").uncompilable_pieces())}
        if blocked:
            raise SweepError(f"--compile: these variants cannot be compiled: {blocked}; leave "
                             "--compile out (the default compiles the variants that can be)")
    if parallel.launched_by_torchrun():
        raise SweepError("a sweep runs in one process that hands its jobs to an engine: run it "
                         "without torchrun; for several machines use --engine ray (torchrun is "
                         "for one meta-training run: phys-l2o train)")
    device = resolve_device(device)
    mode = folder.check(plan.manifest(), overwrite)
    earlier = plan.earlier() if mode == "update" else None  # before it is replaced
    with folder.locked():  # one run at a time in a folder: before anything changes
        folder.prepare(plan.manifest(), mode)
        started = time.perf_counter()
        cells = plan.cells()
        done, changed = finished_cells(plan, cells, mode, earlier)
        if changed:
            print(f"note: {plural(len(changed), 'finished cell')} rerun, what they depend on "
                  f"changed in the sweep file (spec, schedule or targets): "
                  f"{', '.join(map(str, changed))}")
        reused = len(done)
        todo = [c for c in cells if c not in done]
        if mode == "update":
            drop_stale_states(plan, todo)
        if workers is None:
            workers = default_workers(len(todo), device, count)
        learned = [c.method for c in todo if c.learned]
        train_task = (build_task(sweep.train, plan.sizes["steps"], data_root=data_root,
                                 device=torch.device("cpu")) if learned else None)
        costs = step_seconds(plan, learned, train_task) if len(set(learned)) > 1 else None
        jobs = group_jobs(plan, todo, workers, train_task if group else None, costs)
        workers = max(1, min(workers, len(jobs)))
        info = provenance(command)
        versions = {k: info[k] for k in ("version", "commit", "dirty", "source", "torch")}
        options = {"device": device, "data_root": data_root, "compile": compile,
                   "threads": count, "versions": versions}
        # this process's runner: the jobs' (one local worker), and the data notes
        runner = Runner(plan, **options)
        for note in runner.notes:
            print(f"note: {note}")
        print(summary_line(plan, cells, reused, len(todo), count, workers,
                           sum(len(job) > 1 for job in jobs), engine))
        bar = tqdm(total=len(cells), initial=reused, unit="cell", desc=sweep.name,
                   disable=not progress, dynamic_ncols=True)
        try:
            finished = (run_local(plan, jobs, workers, options, runner) if engine == "local"
                        else run_ray(plan, jobs, options, address=address,
                                     cpus=workers * count))
            for cell, record in finished:
                record["depends"] = plan.depends(cell)
                folder.write_cell(cell.method, cell.seed, record)
                folder.log(log_line(cell, record))
                done[cell] = record
                bar.update(1)
        finally:
            bar.close()
        meta = {**info, "budget": plan.budget, "sizes": plan.sizes, "seeds": plan.seeds,
                "device": str(device), "threads": count, "workers": workers, "engine": engine,
                "reused_cells": reused, "seconds": time.perf_counter() - started,
                "data_notes": runner.notes}
        return write_reports(plan, [done[c] for c in cells], meta)


def finished_cells(plan: Plan, cells: list[Cell], mode: str, earlier: Plan | None = None
                   ) -> tuple[dict[Cell, dict], list[Cell]]:
    """The finished cells to reuse, and those whose record no longer fits the sweep file (what
    they depend on changed). A record written before records said what they depend on is
    reused when the whole manifest is unchanged (``mode == "resume"``) or when the earlier
    run's plan (``earlier``, from the folder's ``sweep.json``) gives it the same
    dependencies as this one."""
    done, changed = {}, []
    for cell in cells:
        record = plan.folder.read_cell(cell.method, cell.seed)
        if record is None:
            continue
        depends = record.get("depends")
        if depends is None and earlier is not None:
            depends = earlier.depends(cell)
        if depends == plan.depends(cell) or (depends is None and mode == "resume"):
            done[cell] = record
        else:
            changed.append(cell)
    return done, changed


def drop_stale_states(plan: Plan, cells: list[Cell]) -> None:
    """Remove the training states of ``cells`` that belong to another spec or schedule (a
    variant changed in the sweep file while it meta-trained): they start afresh."""
    from ..meta import CheckpointError
    from ..meta.state import load_training_state

    for cell in cells:
        path = plan.folder.training_state(cell.method, cell.seed) if cell.seed is not None \
            else None
        if path is None or not path.is_file():
            continue
        variant = plan.sweep.variant(cell.method)
        try:
            load_training_state(path, optimizer=build(plan.setup(variant)[0], "optimizer"),
                                schedule=plan.schedule(variant), seed=cell.seed)
        except CheckpointError as error:
            print(f"note: {cell} starts afresh: {error}")
            path.unlink(missing_ok=True)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def summary_line(plan: Plan, cells: list[Cell], reused: int, todo: int, threads: int,
                 workers: int = 1, groups: int = 0, engine: str = "local") -> str:
    """What a run is about to do, in one line."""
    sweep = plan.sweep
    where = f" on {workers} workers" if workers > 1 else ""
    where += " (Ray)" if engine == "ray" else ""
    seeds = (f"{len(sweep.variants)} variants x {plural(len(plan.seeds), 'seed')}"
             if not plan.max_seeds else ", ".join(
                 f"{v.name} x {plural(sum(c.method == v.name for c in cells), 'seed')}"
                 for v in sweep.variants))
    together = f" ({plural(groups, 'group')} of seeds meta-trained together)" if groups else ""
    return (f"sweep {sweep.name!r}, budget {plan.budget!r}, protocol {plan.protocol!r}: "
            f"{len(cells)} cells ({seeds}, {plural(len(sweep.baselines()), 'baseline')}); "
            f"{reused} finished cells reused, {todo} to run{where}{together}; "
            f"{threads} thread(s) per process")


def log_line(cell: Cell, record: dict) -> str:
    """A finished cell's line in ``sweep.log``."""
    finals = "; ".join(f"{label} {np.mean(as_losses(t['final'])):.4g}"
                       for label, t in record["targets"].items())
    train = record.get("meta_training")
    extra = "" if train is None else (f"; best validation {train['best_validation']:.4g} at "
                                      f"epoch {train['best_epoch']}")
    return (f"{cell}: mean final loss {finals}{extra}; "
            f"{record['seconds']:.1f} s")
