"""The engines that run a sweep's jobs (``cells.Job``: a cell, or a group of seeds), yielding
each cell's record as its job finishes; ``runner.run_sweep`` writes them into the run folder.

- ``local`` (``run_local``): on this machine, one job after another in this process (one
  worker) or in ``workers`` spawned processes of ``threads`` threads each, handed a job
  whenever one is free (so a long job never holds up the others).
- ``ray`` (``run_ray``): each job is a Ray task declaring its CPUs (the run's threads) and,
  on a GPU, one GPU; Ray's scheduler starts a job wherever those are free, on this machine or
  on every machine of a Ray cluster (``address``), and starts again a job whose worker died
  (``RETRIES`` times; a learned cell resumes from its training state where the run folder is
  shared). Records come back to this process as the jobs finish, so resume and reports are
  those of the local engine. Ray is an optional extra: ``pip install -e ".[ray]"``.

torchrun is not an engine of sweeps but the way to run one meta-training over processes
(``phys-l2o train`` under ``torchrun``): data-parallel, every rank in step with the others.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import pickle
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import torch

from .. import parallel
from .cells import Job, Runner
from .plan import Plan
from .spec import Cell, SweepError

__all__ = ["ENGINES", "RETRIES", "default_workers", "run_local", "run_ray"]

#: the engines ``run_sweep`` takes.
ENGINES = ("local", "ray")
#: how many times Ray starts a job again whose worker died (a crash, a lost machine).
RETRIES = 3


def default_workers(jobs: int, device: torch.device, threads: int) -> int:
    """Worker processes for ``jobs`` jobs: on the CPU, as many as the cores allow at
    ``threads`` threads each (at most one per job); on a GPU, 1 (a GPU is not shared)."""
    if device.type != "cpu":
        return 1
    return max(1, min(jobs, parallel.available_cores() // threads))


#: a worker process's runner (``_start_worker`` builds it once per process).
_WORKER: Runner | None = None


def _start_worker(plan: Plan, options: dict, parent: int) -> None:
    global _WORKER
    parallel.die_with_parent(parent)  # a killed run leaves no worker writing its files
    parallel.keep_freed_memory()
    parallel.configure_threads(options["threads"])
    _WORKER = Runner(plan, **options)


def _run_in_worker(job: Job) -> list[dict]:
    return _run_job(_WORKER, job)


def _run_job(runner: Runner, job: Job) -> list[dict]:
    """``runner.run(job)`` in a worker: an error that cannot cross processes comes as its
    text."""
    try:
        return runner.run(job)
    except Exception as error:
        try:
            pickle.loads(pickle.dumps(error))
        except Exception:
            raise RuntimeError(f"{', '.join(map(str, job))}: {type(error).__name__}: "
                               f"{error}") from None
        raise


def run_local(plan: Plan, jobs: Sequence[Job], workers: int, options: dict,
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


def import_ray() -> Any:
    """The ``ray`` module, or a ``SweepError`` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise SweepError("--engine ray needs Ray, an optional extra: pip install -e "
                         "\".[ray]\" (or pip install \"phys-l2o[ray]\")") from None
    return ray


#: a Ray worker process's runners, by run (built once per process and run, reused by its jobs)
_RAY_RUNNERS: dict[str, Runner] = {}


def _run_on_ray(setup: tuple[str, Plan, dict], job: Job) -> list[dict]:
    token, plan, options = setup
    runner = _RAY_RUNNERS.get(token)
    if runner is None:
        parallel.configure_threads(options["threads"])
        _RAY_RUNNERS.clear()  # one run at a time per worker process
        runner = _RAY_RUNNERS[token] = Runner(plan, **options)
    return _run_job(runner, job)


def run_ray(plan: Plan, jobs: Sequence[Job], options: dict, *, address: str | None = None,
            cpus: int | None = None) -> Iterator[tuple[Cell, dict]]:
    """Run ``jobs`` as Ray tasks, yielding ``(cell, record)`` as each job finishes.

    Args:
        options: the runners' options (``threads``: the CPUs a job declares).
        address: a Ray cluster to join (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``);
            ``None`` joins the cluster named by ``RAY_ADDRESS`` or starts one on this machine.
        cpus: the CPUs of a cluster started here (default: all).

    Ray is shut down at the end if it was started here. On Ctrl-C the jobs still running are
    cancelled; finished cells are already recorded, and the same call continues.
    """
    if not jobs:
        return
    ray = import_ray()
    # a worker may start elsewhere: it reads and writes the run folder by its full path
    plan = dataclasses.replace(plan, out=plan.out.resolve())
    started = not ray.is_initialized()
    if started:
        local = address is None and not os.environ.get("RAY_ADDRESS")
        ray.init(address=address, num_cpus=cpus if local else None, include_dashboard=False,
                 logging_level="warning", log_to_driver=True)
    gpus = 1 if options["device"].type == "cuda" else 0
    task = ray.remote(_run_on_ray).options(num_cpus=options["threads"], num_gpus=gpus,
                                           max_retries=RETRIES)
    setup = ray.put((uuid.uuid4().hex, plan, options))
    pending = {task.remote(setup, job): job for job in jobs}
    try:
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done)
            yield from zip(job, ray.get(done))
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
