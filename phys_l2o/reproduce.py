"""The paper's experiments as one function each: meta-train the learned optimizers, evaluate
them with the baselines on the same test problems, and write ``results.json``,
``results.md`` and the curve plots.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .meta import Schedule, compare, meta_train, save_checkpoint
from .meta.checkpoint import atomic_write
from .optimizers.base import LearnedOptimizer, compile_available
from .presets import (
    PAPER_BASELINES,
    PAPER_RESULTS,
    PAPER_TASKS,
    STEPS,
    TEST_PROBLEMS,
    budget_sizes,
    learned_preset,
)
from .registry import Spec, build
from .reporting import method_table, plot_curves, summarize_methods, write_json
from .reporting.results import provenance
from .seeding import derive_seed, make_generator, resolve_device
from .tasks import Task

LEARNED = ("hnn", "lstm")
TITLES = {"quadratic": "Table A1: random 10-d quadratics",
          "mnist-sigmoid": "Table A2: MNIST MLP, sigmoid (meta-training net)",
          "mnist-relu": "Table A3: MNIST MLP, ReLU (transfer)"}


@dataclass
class Target:
    """An evaluation target: a task and the key of its baseline learning rates and paper numbers."""

    key: str
    task: Task
    label: str | None = None


def paper_schedule(task: str, optimizer: str | Spec, budget: str, **overrides) -> Schedule:
    """The schedule of ``optimizer`` (a registered name or a spec) on ``task`` for ``budget``
    (``paper`` or ``smoke``): the budget's sizes, the optimizer's truncation and meta
    learning rate (the paper's, or the defaults for an optimizer the paper did not train),
    then ``overrides`` that are not ``None``."""
    name = optimizer if isinstance(optimizer, str) else optimizer.get("type")
    preset = learned_preset(task, name)
    fields = {**budget_sizes(task, budget), "steps": STEPS, "unroll": preset["unroll"],
              "meta_lr": preset["meta_lr"]}
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return Schedule(**fields)


def build_seeded(spec: Spec, seed: int, stream: str) -> LearnedOptimizer:
    """Build a learned optimizer from ``spec`` with its weights drawn from the seed's
    ``stream`` (the global random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, stream))
        return build(spec, "optimizer")


def paper_optimizer(task: str, name: str, seed: int, **overrides) -> LearnedOptimizer:
    """A freshly initialized learned optimizer with the paper's spec for ``task`` (or the
    defaults of a registered optimizer the paper did not train), options ``overrides``."""
    spec = {**learned_preset(task, name)["optimizer"],
            **{k: v for k, v in overrides.items() if v is not None}}
    return build_seeded(spec, seed, f"init-{name}")


def use_compile(compile: bool | None, budget: str, optimizers=()) -> bool:
    """``None`` (auto): compile the learned optimizers' step for the paper budget, when a C++
    compiler is there and every optimizer can be compiled; the smoke budget is too short to
    pay the compilation back."""
    if compile is not None:
        return compile
    return budget == "paper" and compile_available() and not any(
        opt.uncompilable_pieces() for opt in optimizers)


def training_states(out: Path) -> list[Path]:
    """The training states a ``reproduce`` run keeps in ``out`` until it has written its
    results (they let ``--resume`` continue it)."""
    return [out / "checkpoints" / f"{name}.training.pt" for name in LEARNED]


def train_learned(task_name: str, task: Task, budget: str, *, seed: int, device, out: Path,
                  progress: bool, meta_batch: int | None = None,
                  compile: bool = False, resume: bool = False) -> tuple[dict, dict]:
    """Meta-train the HNN and the LSTM; returns their best-weights optimizers and run records.

    Each writes its training state every epoch (``training_states``); with ``resume``, one
    that has a state continues from it (a finished one only reloads its weights)."""
    optimizers, records = {}, {}
    for name, state in zip(LEARNED, training_states(out), strict=True):
        schedule = paper_schedule(task_name, name, budget, meta_batch=meta_batch)
        optimizer = paper_optimizer(task_name, name, seed).compile_step(compile)
        result = meta_train(optimizer, task, schedule, seed=seed, device=device, progress=progress,
                            state_path=state, resume=resume and state.is_file())
        save_checkpoint(out / "checkpoints" / f"{name}.pt", optimizer, task=task_name,
                        budget=budget, seed=seed, schedule=schedule.to_dict(),
                        best_epoch=result.best_epoch, best_validation=result.best_validation)
        optimizers[name] = optimizer
        records[name] = {"schedule": schedule.to_dict(), "best_epoch": result.best_epoch,
                         "best_validation": result.best_validation, "seconds": result.seconds,
                         "skipped_updates": result.skipped_updates,
                         "validation": [h["validation"] for h in result.history]}
    return optimizers, records


def evaluate_target(target: Target, learned: dict, *, problems: int, seed: int, device,
                    progress: bool) -> dict:
    """Every method on the same ``problems`` test problems of ``target``."""
    problems = target.task.sample(problems, make_generator(seed, "test"), device)
    methods = dict(learned)
    methods.update({name: build(spec, "baseline")
                    for name, spec in PAPER_BASELINES[target.key].items()})
    runs = compare(methods, target.task, problems, STEPS, progress=progress)
    params = {name: opt.num_params() for name, opt in methods.items()}
    return summarize_methods(runs, params)


def reproduce(task_name: str, budget: str = "smoke", *, out: str | os.PathLike,
              seed: int = 0, device: str | None = None, progress: bool = True,
              meta_batch: int | None = None, data_root: str | None = None,
              compile: bool | None = None, command: str | None = None,
              resume: bool = False) -> dict:
    """Run one of the paper's experiments end to end and write its reports into ``out``.

    ``compile``: run the learned optimizers' step through ``torch.compile``; ``None`` does so
    for the paper budget when a C++ compiler is available (see ``use_compile``). ``resume``:
    continue a run of the same options killed or interrupted in ``out``.
    """
    device = resolve_device(device)
    compile = use_compile(compile, budget)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    note = None
    if task_name not in PAPER_TASKS:
        raise ValueError(f"unknown task {task_name!r}; choose from {sorted(PAPER_TASKS)}")
    tasks = PAPER_TASKS[task_name]
    context = {"data_root": data_root, "device": device}
    train_task = build(tasks["train"], "task", **context)
    targets = [Target(key, build(spec, "task", **context),
                      key.split("-", 1)[1] if len(tasks["targets"]) > 1 else None)
               for key, spec in tasks["targets"].items()]
    if len(targets) == 1 and targets[0].key == task_name:
        targets[0].task = train_task  # the same problem family: no second copy
    note = getattr(train_task, "data_note", None)
    if note:
        print(f"note: {note}")

    learned, records = train_learned(task_name, train_task, budget, seed=seed, device=device,
                                     out=out, progress=progress, meta_batch=meta_batch,
                                     compile=compile, resume=resume)
    results = {**provenance(command), "task": task_name, "budget": budget, "seed": seed,
               "steps": STEPS, "problems": TEST_PROBLEMS[task_name][budget],
               "device": str(device), "compiled": compile, "resumed": resume,
               "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
               "confidence_interval": "95% percentile bootstrap of the mean over test problems "
                                      "(10,000 resamples)",
               "meta_training": records}
    if task_name == "mnist":
        results["data"] = {"split": train_task.data_split, "note": note}
    evaluated = {t.key: evaluate_target(t, learned, problems=results["problems"], seed=seed,
                                        device=device, progress=progress)
                 for t in targets}
    if task_name == "quadratic":
        results["optimizers"] = evaluated["quadratic"]
    else:
        results["nets"] = {t.label: {"optimizers": evaluated[t.key]} for t in targets}
    results["seconds"] = time.perf_counter() - start

    for t in targets:
        suffix = "" if t.label is None else f"_{t.label}"
        plot_curves(out / f"curves{suffix}.png", evaluated[t.key], TITLES[t.key])
    write_json(out / "results.json", results)
    write_markdown(out / "results.md", results, targets, evaluated, command)
    for state in training_states(out):  # the run is complete: nothing left to resume
        state.unlink(missing_ok=True)
    return results


def write_markdown(path: Path, results: dict, targets: list[Target], evaluated: dict,
                   command: str | None) -> None:
    lines = [f"# Results: {results['task']} ({results['budget']} budget, seed {results['seed']})",
             ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    if results.get("data", {}).get("note"):
        lines += [f"Data: {results['data']['note']}", ""]
    lines += [f"{results['problems']} test problems shared by every method, {results['steps']} "
              f"steps each; device {results['device']}, torch {results['torch']}, "
              f"{results['machine']}"
              f"{', compiled optimizer steps' if results['compiled'] else ''}; "
              f"{results['seconds']:.0f} s in all.", ""]
    for t in targets:
        lines += [f"## {TITLES[t.key]}", "",
                  method_table(evaluated[t.key], PAPER_RESULTS[t.key]), ""]
    lines += ["Final loss: the loss after the last step. Intervals: "
              f"{results['confidence_interval']}; the paired difference compares each method "
              "with the HNN on the same problems (negative: lower loss than the HNN). The "
              "paper's column is its reported mean, from different problems per method.", ""]
    text = "\n".join(lines)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
