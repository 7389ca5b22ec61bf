"""The one runner of sweeps: ``run_sweep`` (``phys-l2o sweep FILE``) and ``reproduce``
(``phys-l2o reproduce TASK``, the paper's sweep file of a task).

A run splits its plan into cells and writes every cell's record into the run folder the moment
it finishes, atomically; a learned cell also writes its checkpoint beside it and, while it
trains, its training state (see ``experiments.folder``). Running the same sweep on the same
``out`` again resumes: finished cells are read back, a cell that was meta-training goes on from
its last epoch.

The cells to run are ordered longest-expected first (``longest_first``: meta-training before
evaluation, the most optimizee steps first), so that a long cell never runs alone at the end.
Under ``torchrun`` they are dealt to the ranks round-robin in that order and rank 0 gathers the
records and writes the reports (``experiments.report``). Each process runs its cells with
``workers`` worker processes of one thread each (``run_cells``): by default, in a run of one
process on the CPU, as many as its cores allow, so that no core idles. A cell's record is the
same whichever process runs it: its seeds are its own.
"""

from __future__ import annotations

import contextlib
import datetime
import multiprocessing
import os
import pickle
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import parallel
from ..meta import evaluate, save_checkpoint
from ..meta.evaluate import check_memory, field_evaluations
from ..meta.group import groupable, stack_problems
from ..meta.tuning import choose
from ..optimizers.base import Optimizer
from ..optimizers.stacked import Stacked
from ..registry import Spec, as_spec, build
from ..reporting.results import as_losses, losses_record, provenance
from ..seeding import make_generator, resolve_device
from ..tasks.base import Task, build_task
from .folder import FORMAT
from .paper import paper_sweep
from .plan import Plan, make_plan
from .protocols import reported_index
from .report import write_reports
from .spec import Cell, Sweep, SweepError, Target, load_sweep
from .training import train_group, train_variant

#: what one worker runs at a time: one cell, or seeds of one variant meta-trained as a group
Job = tuple[Cell, ...]


class Runner:
    """Runs the cells of a plan in this process: builds the tasks and the shared test problems
    once, then meta-trains and evaluates one cell at a time."""

    def __init__(self, plan: Plan, *, device: torch.device, data_root: str | None = None,
                 compile: bool | None = None, threads: int = 1,
                 versions: dict | None = None) -> None:
        self.plan, self.device, self.compile = plan, device, compile
        self.folder = plan.folder
        self.threads, self.versions = threads, versions or {}
        sweep, steps = plan.sweep, plan.sizes["steps"]
        self.data_root = data_root
        context = {"data_root": data_root, "device": device}
        self.train_task = build_task(sweep.train, steps, **context)
        self.tasks = {}
        for t in sweep.targets:
            same = as_spec(t.task) == as_spec(sweep.train)
            self.tasks[t.label] = self.train_task if same else build_task(t.task, steps,
                                                                          **context)
        # targets watched during meta-training, on problems of the training task's pool
        self.monitors = {t.label: self.on_training_pool(t) for t in sweep.targets
                         if t.label in sweep.monitor}
        self.notes = sorted({n for task in [self.train_task, *self.tasks.values()]
                             if (n := getattr(task, "data_note", None))})
        # every method and seed runs on the same test problems of each target
        if device.type == "cpu":
            for label, task in self.tasks.items():
                check_memory(task, plan.sizes["test_problems"],
                             f"[targets.{label}]: {plan.sizes['test_problems']} test problems",
                             "give the budget fewer test_problems")
        self.problems = {label: task.sample(plan.sizes["test_problems"],
                                            make_generator(sweep.test_seed, "test"), device)
                         for label, task in self.tasks.items()}

    def run(self, job: Job) -> list[dict]:
        """The records of a job's cells: one cell, or the seeds of one variant meta-trained
        as a group (``group_jobs``)."""
        start = time.perf_counter()
        records = self.run_learned(job) if job[0].learned else [self.run_baseline(job[0])]
        share = (time.perf_counter() - start) / len(job)
        for cell, record in zip(job, records):
            # a resumed cell's time includes its meta-training in the processes before this one
            earlier = record.pop("earlier_seconds", 0.0)
            record.update(format=FORMAT, method=cell.method, seed=cell.seed,
                          protocol=self.plan.protocol, reported_loss=self.plan.reported_loss,
                          seconds=share + earlier, device=str(self.device),
                          threads=self.threads, versions=self.versions)
            if len(job) > 1:
                record["group"] = {"seeds": [c.seed for c in job],
                                   "seconds": share * len(job)}
        return records

    def evaluate_all(self, optimizer: Optimizer, labels: list[str],
                     scale: float | None = None, members: int = 1) -> list[dict[str, dict]]:
        """Each member's records of ``labels``' test problems: ``optimizer`` is one optimizer
        (``members=1``) or a ``Stacked`` one, whose members run on copies of the problems."""
        out: list[dict[str, dict]] = [{} for _ in range(members)]
        index = reported_index(self.plan.reported_loss)
        for label in labels:
            begin = time.perf_counter()
            problems = self.problems[label]
            if members > 1:
                problems = stack_problems([problems] * members)
            losses = evaluate(optimizer, self.tasks[label], problems,
                              self.plan.sizes["steps"], scale=scale)
            seconds = (time.perf_counter() - begin) / members
            for member, part in zip(out, losses.chunk(members)):
                member[label] = {**losses_record(part, index), "seconds": seconds}
        return out

    def run_baseline(self, cell: Cell) -> dict:
        specs = {t.label: spec for t in self.plan.sweep.targets
                 if (spec := t.baseline(cell.method)) is not None}
        targets, tuning = {}, {}
        for target in self.plan.sweep.targets:
            if cell.method in target.tuned:
                tuning[target.label] = self.tune(target, specs[target.label])
                specs[target.label] = {**specs[target.label], "lr": tuning[target.label]["lr"]}
        for label, spec in specs.items():
            targets.update(self.evaluate_all(build(spec, "baseline"), [label])[0])
        return {"kind": "baseline", "spec": specs, "params": None, "nfe": None,
                "targets": targets, **({"tuning": tuning} if tuning else {})}

    def on_training_pool(self, target: Target) -> Task:
        """``target``'s task drawing its problems from the training task's pool, where the
        training task has one (the validation of watched targets, the tuning problems)."""
        train = self.plan.sweep.train
        pool = {"pool": train["pool"]} if "pool" in train else {}
        return build_task({**as_spec(target.task), **pool}, self.plan.sizes["steps"],
                          data_root=self.data_root, device=self.device)

    def tune(self, target: Target, spec: Spec) -> dict:
        """The learning rate of the baseline ``spec`` (without one) on ``target``: every rate of
        the sweep's grid on the same tuning problems, drawn apart from the test problems (from
        the training task's pool where it has one), the lowest mean reported loss chosen
        (``meta.tuning.choose``)."""
        sweep, steps = self.plan.sweep, self.plan.sizes["steps"]
        task = self.on_training_pool(target)
        problems = task.sample(self.plan.tuning_problems,
                               make_generator(sweep.test_seed, f"tuning/{target.label}"),
                               self.device)
        index = reported_index(self.plan.reported_loss)
        trials = {}
        for lr in sweep.tuning_grid:
            losses = evaluate(build({**spec, "lr": lr}, "baseline"), task, problems, steps)
            trials[lr] = float(losses[:, index].double().mean())
        return {**choose(trials), "problems": self.plan.tuning_problems,
                "pool": sweep.train.get("pool")}

    def run_learned(self, job: Job) -> list[dict]:
        """Meta-train a job's seeds of one variant (alone, or as one group), save each one's
        checkpoint and evaluate them on every target; one record per cell."""
        plan, folder = self.plan, self.folder
        method = job[0].method
        variant = plan.sweep.variant(method)
        spec, settings = plan.setup(variant)
        schedule = plan.schedule(variant)
        states = [folder.training_state(method, cell.seed) for cell in job]
        states[0].parent.mkdir(parents=True, exist_ok=True)
        estimator = settings.get("estimator")
        if len(job) == 1:
            one = train_variant(spec, self.train_task, schedule, seed=job[0].seed,
                                device=self.device, compile=self.compile, state_path=states[0],
                                resume=states[0].is_file(), monitors=self.monitors,
                                estimator=estimator)
            trained, evaluator = [one], one.evaluator
        else:
            trained, evaluator = train_group(spec, self.train_task, schedule,
                                             seeds=[c.seed for c in job], device=self.device,
                                             compile=self.compile, state_paths=states,
                                             monitors=self.monitors)
        for cell, member in zip(job, trained):
            result = member.result
            save_checkpoint(folder.checkpoint(method, cell.seed), member.optimizer,
                            **({} if estimator is None else {"estimator": estimator}),
                            task=plan.sweep.train["type"], task_spec=plan.sweep.train,
                            sweep=plan.sweep.name, budget=plan.budget, seed=cell.seed,
                            schedule=schedule.to_dict(), best_epoch=result.best_epoch,
                            best_validation=result.best_validation)
        # evaluated with another out_mul than it was trained with, where the variant says so
        scale = settings.get("test_out_mul")
        targets = self.evaluate_all(evaluator, list(self.tasks), scale, len(job))
        first = next(iter(self.tasks))
        watched: list[dict] = [{} for _ in job]
        for label in self.monitors:
            # the oracle: the weights of the epoch that was best on this target's validation
            for member in trained:
                member.optimizer.load_state_dict(member.result.monitors[label]["state"])
            oracles = self.evaluate_all(evaluator, [label], scale, len(job))
            for member, oracle, target, mine in zip(trained, oracles, targets, watched):
                best = member.result.monitors[label]
                target[label]["oracle"] = {**oracle[label], "epoch": best["epoch"]}
                mine[label] = {"best_epoch": best["epoch"],
                               "best_validation": best["validation"],
                               "validation": [h["monitors"][label]
                                              for h in member.result.history]}
        records = []
        for member, target, mine, state in zip(trained, targets, watched, states):
            result = member.result
            member.optimizer.load_state_dict(result.best_state)
            state.unlink(missing_ok=True)
            records.append({
                "kind": "learned", "earlier_seconds": member.earlier_seconds,
                "spec": spec, "schedule": schedule.to_dict(),
                "test_out_mul": scale, "compiled": member.compiled,
                "params": member.optimizer.num_params(),
                "nfe": field_evaluations(member.optimizer, self.tasks[first],
                                         self.problems[first], plan.sizes["steps"]),
                "targets": target,
                "meta_training": {"seconds": result.seconds, "best_epoch": result.best_epoch,
                                  "best_validation": result.best_validation,
                                  "validation": [h["validation"] for h in result.history],
                                  "monitors": mine,
                                  "skipped_updates": result.skipped_updates,
                                  "diverged": member.diverged is not None}})
        return records


def run_sweep(sweep: Sweep | str | os.PathLike, budget: str | None = None, *,
              out: str | os.PathLike, seeds: int | list[int] | None = None,
              device: str | torch.device | None = "auto", threads: int | None = None,
              data_root: str | None = None, compile: bool | None = None,
              overrides: Mapping[str, int | None] | None = None, overwrite: bool = False,
              progress: bool = True, command: str | None = None,
              protocol: str = "corrected",
              max_seeds: Mapping[str, int] | None = None,
              workers: int | None = None, timeout: float | None = None,
              group: bool = True) -> dict | None:
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
        compile: compile the learned optimizers' steps; ``None``: see
            ``experiments.training.use_compile``.
        overrides: budget fields to change (e.g. ``{"meta_batch": 4}``).
        overwrite: start again in an ``out`` that holds another run.
        protocol: ``corrected`` (this project's) or ``reference`` (the original code's); see
            ``experiments.protocols``.
        max_seeds: ``{variant: n}``: run only the first ``n`` seeds of a costly variant.
        workers: worker processes that run this process's cells (default:
            ``default_workers``); 1 runs them one after another in this process.
        timeout: under torchrun, minutes a rank waits for another that gives no sign of life
            before it raises ``parallel.RankTimeout`` (default ``parallel.DEFAULT_TIMEOUT``).
        group: meta-train the seeds of a variant as one program where they can
            (``group_jobs``); ``False``: every cell alone.

    Returns:
        The report (``results.json``'s contents) on rank 0, ``None`` on other ranks.

    Raises:
        SweepError: a bad sweep, budget, seeds or workers, or an ``out`` that holds another
            run.
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
    wait = parallel.collective_timeout(timeout)
    with parallel.thread_policy(threads) as count:
        return _run(plan, count, device=device, data_root=data_root, compile=compile,
                    overwrite=overwrite, progress=progress, command=command, workers=workers,
                    timeout=wait, group=group)


def reproduce(task: str, budget: str = "smoke", *, out: str | os.PathLike, seed: int = 0,
              seeds: int = 1, meta_batch: int | None = None, **options: Any) -> dict | None:
    """Run one of the paper's experiments (its sweep file, ``paper_sweep(task)``) end to end
    and write its reports into ``out``: meta-seeds ``seed .. seed + seeds - 1``, ``meta_batch``
    problems per trajectory (default: the budget's). ``options`` are ``run_sweep``'s."""
    return run_sweep(paper_sweep(task), budget, out=out, seeds=list(range(seed, seed + seeds)),
                     overrides={"meta_batch": meta_batch}, **options)


def default_workers(cells: int, device: torch.device, threads: int, world: int) -> int:
    """Worker processes for ``cells`` cells of one process: on the CPU in a one-process run,
    as many as the cores allow at ``threads`` threads each (at most one per cell); otherwise
    1 (torchrun's ranks already share the machine's cores; a GPU is not shared)."""
    if world > 1 or device.type != "cpu":
        return 1
    return max(1, min(cells, parallel.available_cores() // threads))


def expected_cost(plan: Plan, cell: Cell) -> int:
    """A cell's expected cost, to order cells by: a learned cell's optimizee steps of
    meta-training (epochs x trajectories x meta-batch x steps), times its population for an
    evolution-strategies estimator; 0 for a baseline (it only evaluates)."""
    if not cell.learned:
        return 0
    variant = plan.sweep.variant(cell.method)
    schedule = plan.schedule(variant)
    estimator = plan.setup(variant)[1].get("estimator")
    population = estimator.get("population", 1) if isinstance(estimator, Mapping) else 1
    return (schedule.epochs * schedule.trajectories * schedule.meta_batch * schedule.steps
            * population)


def longest_first(plan: Plan, cells: Sequence[Cell]) -> list[Cell]:
    """``cells`` by ``expected_cost``, the largest first (ties in the order given)."""
    return sorted(cells, key=lambda c: -expected_cost(plan, c))


def can_group(plan: Plan, method: str, train_task: Task) -> bool:
    """Whether the seeds of variant ``method`` can be meta-trained as one group: truncated
    backpropagation (no estimator), a task whose trajectories all run the same steps
    (``meta.group.groupable``) and an optimizer whose step ``vmap`` runs
    (``Stacked.vectorizable``)."""
    variant = plan.sweep.variant(method)
    spec, settings = plan.setup(variant)
    return (settings.get("estimator") is None and groupable(train_task)
            and Stacked.vectorizable(build(spec, "optimizer")))


def group_jobs(plan: Plan, cells: Sequence[Cell], workers: int, train_task: Task | None
               ) -> list[Job]:
    """The jobs of ``cells`` (ordered longest first): the learned cells of a variant that
    ``can_group`` become groups of seeds, split so that every one of ``workers`` has a job
    where there are enough seeds; every other cell is a job of its own. ``train_task`` is
    ``None`` for no groups."""
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
    return sorted(jobs, key=lambda job: -sum(expected_cost(plan, c) for c in job))


#: a worker process's runner (``_start_worker`` builds it once per process).
_WORKER: Runner | None = None


def _start_worker(plan: Plan, options: dict, parent: int) -> None:
    global _WORKER
    parallel.die_with_parent(parent)  # a killed run leaves no worker writing its files
    parallel.keep_freed_memory()
    parallel.configure_threads(options["threads"])
    _WORKER = Runner(plan, **options)


def _run_in_worker(job: Job) -> list[dict]:
    try:
        return _WORKER.run(job)
    except Exception as error:  # an error that cannot cross processes comes as its text
        try:
            pickle.loads(pickle.dumps(error))
        except Exception:
            raise RuntimeError(f"{', '.join(map(str, job))}: {type(error).__name__}: "
                               f"{error}") from None
        raise


def run_cells(plan: Plan, jobs: Sequence[Job], workers: int, options: dict,
              runner: Runner | None = None) -> Iterator[tuple[Cell, dict]]:
    """Run ``jobs``, yielding ``(cell, record)`` as each job finishes: one after another with
    ``runner`` (``Runner(plan, **options)`` if not given) for one worker, else in ``workers``
    spawned processes of ``options["threads"]`` threads, each with its own runner.

    On Ctrl-C every process of the terminal gets the signal: a worker that is meta-training
    saves its training state (as one process does), cells not started are dropped, and the
    ``KeyboardInterrupt`` reaches the caller once the workers have stopped."""
    if workers <= 1:
        runner = runner or Runner(plan, **options)
        for job in jobs:
            yield from zip(job, runner.run(job))
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(plan, options, os.getpid()))
    try:
        futures = {pool.submit(_run_in_worker, job): job for job in jobs}
        for future in as_completed(futures):
            yield from zip(futures[future], future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
         command, workers: int | None = None,
         timeout: datetime.timedelta = parallel.DEFAULT_TIMEOUT, group: bool = True
         ) -> dict | None:
    sweep, folder = plan.sweep, plan.folder
    check_builds(plan, data_root)
    if compile:
        blocked = {v.name: pieces for v in sweep.variants
                   if (pieces := build(plan.setup(v)[0], "optimizer").uncompilable_pieces())}
        if blocked:
            raise SweepError(f"--compile: these variants cannot be compiled: {blocked}; leave "
                             "--compile out (the default compiles the variants that can be)")
    with parallel.joined(resolve_device(device), timeout) as (ranks, device), \
            contextlib.ExitStack() as stack:
        mode = folder.check(plan.manifest(), overwrite)
        earlier = plan.earlier() if mode == "update" else None  # before it is replaced
        if ranks.local_rank == 0:  # one run at a time in a folder: before anything changes
            stack.enter_context(folder.locked())
        parallel.barrier(ranks)  # every rank has checked its folder before any is changed
        if ranks.local_rank == 0:  # each machine prepares its own --out
            folder.prepare(plan.manifest(), mode)
        parallel.barrier(ranks)
        started = time.perf_counter()
        cells = plan.cells()
        done, changed = finished_cells(plan, cells, mode, earlier)
        if changed and ranks.main:
            print(f"note: {plural(len(changed), 'finished cell')} rerun, what they depend on "
                  f"changed in the sweep file (spec, schedule or targets): "
                  f"{', '.join(map(str, changed))}")
        reused = len(done)
        todo = longest_first(plan, [c for c in cells if c not in done])
        if mode == "update" and ranks.local_rank == 0:
            drop_stale_states(plan, todo)
        parallel.barrier(ranks)  # every rank has read the same finished cells
        if workers is None:
            workers = default_workers(-(-len(todo) // ranks.world), device, count,
                                      ranks.world)
        train_task = (build_task(sweep.train, plan.sizes["steps"], data_root=data_root,
                                 device=torch.device("cpu"))
                      if group and any(c.learned for c in todo) else None)
        jobs = group_jobs(plan, todo, workers * ranks.world, train_task)
        mine = [job for i, job in enumerate(jobs) if ranks.mine(i)]
        workers = max(1, min(workers, len(mine)))
        info = provenance(command)
        versions = {k: info[k] for k in ("version", "commit", "dirty", "source", "torch")}
        options = {"device": device, "data_root": data_root, "compile": compile,
                   "threads": count, "versions": versions}
        # this process's runner: its cells' (one worker), and rank 0's data notes
        runner = Runner(plan, **options) if (mine and workers == 1) or ranks.main else None
        if ranks.main:
            for note in runner.notes:
                print(f"note: {note}")
            print(summary_line(plan, cells, reused, len(todo), ranks.world, count, workers,
                               sum(len(job) > 1 for job in jobs)))
        desc = sweep.name if ranks.world == 1 else f"{sweep.name} (rank 0 of {ranks.world})"
        bar = tqdm(total=reused + sum(map(len, mine)), initial=reused, unit="cell", desc=desc,
                   disable=not (progress and ranks.main), dynamic_ncols=True)
        fresh = {}
        try:
            for cell, record in run_cells(plan, mine, workers, options, runner):
                record["rank"] = ranks.rank
                record["depends"] = plan.depends(cell)
                folder.write_cell(cell.method, cell.seed, record)
                folder.log(log_line(cell, record))
                fresh[cell] = record
                bar.update(1)
        finally:
            bar.close()
        # the ranks finish their cells at different times: wait while the others are alive
        parallel.meet(ranks, "the end of the sweep (for the other ranks' cells)")
        gathered = parallel.gather({(c.method, c.seed): r for c, r in fresh.items()}, ranks)
        if not ranks.main:
            return None
        for part in gathered:
            for (method, seed), record in part.items():
                done[Cell(method, seed)] = record
                if folder.read_cell(method, seed) is None:  # another machine's cell: a copy
                    folder.write_cell(method, seed, record)
        meta = {**info, "budget": plan.budget, "sizes": plan.sizes, "seeds": plan.seeds,
                "device": str(device), "threads": count, "processes": ranks.world,
                "workers": workers,
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


def summary_line(plan: Plan, cells: list[Cell], reused: int, todo: int, world: int,
                 threads: int, workers: int = 1, groups: int = 0) -> str:
    """What a run is about to do, in one line."""
    sweep = plan.sweep
    processes = world * workers
    where = f" on {processes} processes" if processes > 1 else ""
    seeds = (f"{len(sweep.variants)} variants x {plural(len(plan.seeds), 'seed')}"
             if not plan.max_seeds else ", ".join(
                 f"{v.name} x {plural(sum(c.method == v.name for c in cells), 'seed')}"
                 for v in sweep.variants))
    together = f" ({plural(groups, 'group')} of seeds meta-trained together)" if groups else ""
    return (f"sweep {sweep.name!r}, budget {plan.budget!r}, protocol {plan.protocol!r}: "
            f"{len(cells)} cells ({seeds}, {plural(len(sweep.baselines()), 'baseline')}); "
            f"{reused} finished cells reused, {todo} to run{where}"
            f"{together}"
            f"; {threads} thread(s) per process")


def log_line(cell: Cell, record: dict) -> str:
    """A finished cell's line in ``sweep.log``."""
    finals = "; ".join(f"{label} {np.mean(as_losses(t['final'])):.4g}"
                       for label, t in record["targets"].items())
    train = record.get("meta_training")
    extra = "" if train is None else (f"; best validation {train['best_validation']:.4g} at "
                                      f"epoch {train['best_epoch']}")
    return (f"rank {record.get('rank', 0)} {cell}: mean final loss {finals}{extra}; "
            f"{record['seconds']:.1f} s")
