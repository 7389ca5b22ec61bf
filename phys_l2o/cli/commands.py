"""The ``phys-l2o`` commands: each checks its options and output, then calls the library."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checks import check_output_dir
from ..config import load_toml
from ..experiments.protocols import variant_under
from ..registry import Spec, as_spec, build, lookup, registered, spec_of
from .parser import CONFIG_TABLES

if TYPE_CHECKING:
    from ..meta import MetaTrainingInterrupted

def make_task(spec: Spec | str, args: argparse.Namespace, device, steps: int):
    """Build a task spec where it runs (data folder, device), holding ``steps`` steps."""
    from ..tasks.base import build_task

    task = build_task(as_spec(spec), steps, data_root=args.data_root, device=device)
    note = getattr(task, "data_note", None)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return task


def read_config(path: Path) -> dict[str, Any]:
    """The tables of a `train --config` file, checked."""
    config = load_toml(path)
    unknown = sorted(set(config) - set(CONFIG_TABLES))
    if unknown:
        raise ValueError(f"{path}: unknown tables {unknown}; a config file holds "
                         f"{list(CONFIG_TABLES)}")
    if "optimizer" not in config:
        raise ValueError(f"{path} has no [optimizer] table: write the optimizer's spec there "
                         '(type = "hnn", ...; phys_l2o.to_toml(spec_of(optimizer), '
                         '"optimizer") writes one)')
    for table in CONFIG_TABLES:
        if table in config and not isinstance(config[table], dict):
            raise ValueError(f"{path}: {table} must be a table ([{table}])")
    return config


class UsageError(ValueError):
    """A bad option or output location, found before any work."""


def check_output_file(path: Path) -> None:
    """``path`` can be written: not a folder, and its folder exists and is writable or can be
    made in a writable one."""
    if path.is_dir():
        raise UsageError(f"--out {path} is a folder; give a file path such as {path / 'hnn.pt'}")
    check_output_dir(path.parent, what=f"the folder of --out {path}")


def training_state_path(out: Path) -> Path:
    """Where `train --out X.pt` keeps its training state while it runs: X.training.pt."""
    return out.with_name(f"{out.stem}.training{out.suffix or '.pt'}")


def refuse_existing(paths: list[Path], args: argparse.Namespace) -> None:
    """Refuse to write over earlier results without --overwrite (or --resume, where the
    command has it)."""
    existing = [p for p in paths if p.exists()]
    can_resume = hasattr(args, "resume")
    if existing and not (args.overwrite or (can_resume and args.resume)):
        how = " or --resume to continue it" if can_resume else ""
        raise UsageError(f"{existing[0]} already holds results of an earlier run; pass "
                         f"--overwrite to start again{how}")


def interrupted(error: MetaTrainingInterrupted, argv: list[str]) -> int:
    """One line on Ctrl-C: where the state is and the command that continues the run."""
    command = shlex.join(["phys-l2o", *[a for a in argv if a not in ("--resume", "--overwrite")],
                          "--resume"])
    if error.state_path is None:
        print("phys-l2o: interrupted; nothing was saved", file=sys.stderr)
    else:
        print(f"phys-l2o: interrupted; the training state after epoch {error.epoch} is in "
              f"{error.state_path}; continue with: {command}", file=sys.stderr)
    return 130


def cmd_sweep(args: argparse.Namespace, argv: list[str]) -> int:
    from ..experiments.runner import run_sweep
    from ..experiments.spec import load_sweep

    sweep = load_sweep(args.file)
    args.out = args.out or default_out(sweep.name, args.protocol)
    return run_and_report(args, argv, lambda: run_sweep(
        sweep, args.budget, out=args.out, seeds=args.seeds, device=args.device,
        threads=args.threads, data_root=args.data_root, compile=args.compile,
        overwrite=args.overwrite, progress=not args.no_progress,
        command="phys-l2o " + shlex.join(argv), protocol=args.protocol,
        max_seeds=dict(args.max_seeds), workers=args.workers, group=args.group,
        engine=args.engine, address=args.address))


def default_out(name: str, protocol: str) -> Path:
    """``runs/NAME``, or ``runs/NAME-PROTOCOL`` for another protocol than the default."""
    return Path("runs") / (name if protocol == "corrected" else f"{name}-{protocol}")


def cmd_reproduce(args: argparse.Namespace, argv: list[str]) -> int:
    from ..experiments.runner import reproduce

    args.out = args.out or default_out(args.task, args.protocol)
    return run_and_report(args, argv, lambda: reproduce(
        args.task, args.budget, out=args.out, seed=args.seed, seeds=args.seeds,
        device=args.device, progress=not args.no_progress, meta_batch=args.meta_batch,
        data_root=args.data_root, compile=args.compile, threads=args.threads,
        command="phys-l2o " + shlex.join(argv), overwrite=args.overwrite,
        protocol=args.protocol, max_seeds=dict(args.max_seeds), workers=args.workers,
        group=args.group, engine=args.engine, address=args.address))


def run_and_report(args: argparse.Namespace, argv: list[str], run) -> int:
    """Run a sweep (``run()``, which checks ``--out`` before any work), print its table, and
    turn Ctrl-C into one line that says how to continue."""
    try:
        results = run()
    except KeyboardInterrupt:  # MetaTrainingInterrupted, or Ctrl-C while workers ran
        command = shlex.join(["phys-l2o", *[a for a in argv if a != "--overwrite"]])
        print(f"phys-l2o: interrupted; the finished cells and the training state of the cell in "
              f"progress are in {args.out}; continue with: {command}", file=sys.stderr)
        return 130
    print((args.out / "results.md").read_text())
    print(f"wrote {args.out}/results.json, results.md and plots in {results['seconds']:.0f} s")
    return 0


def cmd_train(args: argparse.Namespace, argv: list[str]) -> int:
    from .. import parallel
    from ..seeding import resolve_device

    # under torchrun: one data-parallel run over the ranks (parallel.py); rank 0 writes
    timeout = parallel.collective_timeout(args.timeout)
    with parallel.joined(resolve_device(args.device), timeout) as (ranks, device):
        return train_on(args, argv, ranks, device)


def train_on(args: argparse.Namespace, argv: list[str], ranks, device) -> int:
    from ..experiments.paper import learned_preset, paper_schedule
    from ..experiments.training import train_variant
    from ..meta import MetaTrainingInterrupted, save_checkpoint

    state_path = training_state_path(args.out)
    if ranks.main:  # rank 0 alone writes (torchrun stops the other ranks if it fails here)
        check_output_file(args.out)
        refuse_existing([args.out, state_path], args)
        if args.resume and not state_path.is_file():
            raise UsageError(f"--resume: no training state at {state_path} (it is removed when "
                             "a run ends); start again with --overwrite")
    config: dict[str, Any] = {}
    if args.config is not None:
        config = read_config(args.config)
        if args.task is not None and "task" in config:
            raise ValueError(f"the task is given twice: by --task and by [task] in "
                             f"{args.config}; keep one")
        spec = as_spec(config["optimizer"])
        lookup(spec["type"], "optimizer")
    task_spec = as_spec(config.get("task", args.task or "quadratic"))
    task_name = task_spec["type"]
    if args.config is None:
        spec = learned_preset(task_name, args.optimizer or "hnn")["optimizer"]
    if args.out_mul is not None:
        spec["out_mul"] = args.out_mul
    spec, settings = variant_under(args.protocol, spec, {})
    settings.pop("test_out_mul", None)  # an evaluation setting: reproduce and sweep apply it
    flags = {"epochs": args.epochs, "trajectories": args.trajectories,
             "meta_batch": args.meta_batch, "steps": args.steps, "unroll": args.unroll,
             "meta_lr": args.meta_lr, "validation_problems": args.validation_problems}
    try:
        schedule = paper_schedule(task_name, spec, args.budget,
                                  **{**settings, **config.get("schedule", {}),
                                     **{k: v for k, v in flags.items() if v is not None}})
    except TypeError as error:
        raise ValueError(f"bad [schedule] in {args.config}: {error}") from None
    estimator = None
    if "estimator" in config:
        estimator = build(config["estimator"], "estimator")
    task = make_task(task_spec, args, device, schedule.steps)
    try:
        trained = train_variant(spec, task, schedule, seed=args.seed, device=device,
                                compile=args.compile, state_path=state_path,
                                state_every=args.state_every, resume=args.resume, ranks=ranks,
                                progress=not args.no_progress, estimator=estimator)
    except MetaTrainingInterrupted as error:
        return interrupted(error, argv)
    if trained.diverged is not None:
        if not ranks.main:
            return 1
        state_path.unlink(missing_ok=True)  # a run that ended: nothing to continue
        print(f"error: {trained.diverged}", file=sys.stderr)
        print(f"nothing was written to {args.out} (the training state was removed: the same "
              "or a corrected command starts afresh)", file=sys.stderr)
        return 1
    result = trained.result
    diverged = f"{result.skipped_updates} of {schedule.epochs * schedule.trajectories} " \
               "trajectories diverged (their truncation was skipped)"
    if not ranks.main:
        return 0
    if result.best_epoch == 0 and not args.allow_untrained:
        state_path.unlink(missing_ok=True)  # a run that ended: nothing to continue
        print(f"error: the validation loss never improved on the untrained weights "
              f"({result.best_validation:.4g}); {diverged}. Lower the meta learning rate or "
              f"out_mul, or train longer; nothing was written to {args.out} "
              "(--allow-untrained writes the untrained weights)", file=sys.stderr)
        return 1
    extra = {} if estimator is None else {"estimator": spec_of(estimator)}
    if task_spec != {"type": task_name}:
        extra["task_spec"] = spec_of(task)
    save_checkpoint(args.out, trained.optimizer, task=task_name, seed=args.seed, **extra,
                    protocol=args.protocol, schedule=schedule.to_dict(),
                    best_epoch=result.best_epoch, best_validation=result.best_validation,
                    diverged_trajectories=result.skipped_updates)
    state_path.unlink(missing_ok=True)
    where = f" on {ranks.world} processes" if ranks.world > 1 else ""
    print(f"best validation loss {result.best_validation:.4g} at epoch {result.best_epoch} "
          f"({result.seconds:.0f} s{where}); {diverged}; wrote {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace, argv: list[str]) -> int:
    import hashlib

    from ..experiments.paper import DISPLAY_NAMES, paper_baselines
    from ..meta import compare, load_checkpoint
    from ..meta.evaluate import check_memory
    from ..reporting import method_table, plot_curves, summarize_methods, write_json
    from ..reporting.results import provenance
    from ..seeding import make_generator, resolve_device

    if args.out is not None:
        check_output_dir(args.out)
        refuse_existing([args.out / name for name in ("results.json", "results.md",
                                                      "curves.png")], args)
    if args.checkpoint is not None and args.lr is not None:
        raise UsageError("--lr sets a baseline's learning rate (--optimizer); a checkpoint's "
                         "step scale is its own out_mul")
    device = resolve_device(args.device)
    trained_on = None
    if args.checkpoint is not None:
        optimizer, record = load_checkpoint(args.checkpoint, device)
        trained_on = record.get("task")
    task_name = args.task or (trained_on if trained_on in registered("task") else "quadratic")
    if task_name != "mnist":
        for option, value in (("--activation", args.activation), ("--data-root", args.data_root)):
            if value is not None:
                raise UsageError(f"{option} applies to the MNIST task only, not to "
                                 f"{task_name!r}; leave it out or add --task mnist")
    if trained_on is not None and task_name != trained_on:
        print(f"note: {args.checkpoint} was meta-trained on {trained_on!r}; evaluating it on "
              f"{task_name!r}", file=sys.stderr)
    task_spec: Spec = {"type": task_name}
    if task_name == "mnist":
        task_spec.update(activation=args.activation or "sigmoid", pool="test")
    task = make_task(task_spec, args, device, args.steps)
    if args.checkpoint is None:
        spec = dict(paper_baselines(task_spec)[args.optimizer])
        if args.lr is not None:
            spec["lr"] = args.lr
        optimizer = build(spec, "baseline")
    name = optimizer.name
    if device.type == "cpu":
        check_memory(task, args.problems, f"evaluating {args.problems} problems",
                     "use fewer (--problems)")
    problems = task.sample(args.problems, make_generator(args.seed, "test"), device)
    runs = compare({name: optimizer}, task, problems, args.steps, progress=not args.no_progress)
    methods = summarize_methods(runs, {name: optimizer.num_params()})
    table = method_table(methods, names=DISPLAY_NAMES)
    print(table)
    if args.out is not None:
        record = {**provenance("phys-l2o " + shlex.join(argv)), "task": task_name,
                  "activation": getattr(task, "activation", None), "seed": args.seed,
                  "steps": args.steps, "problems": args.problems,
                  "data_note": getattr(task, "data_note", None), "optimizers": methods}
        if args.checkpoint is not None:
            record.update(checkpoint=str(args.checkpoint), checkpoint_sha256=hashlib.sha256(
                args.checkpoint.read_bytes()).hexdigest(), trained_on=trained_on)
        write_json(args.out / "results.json", record)
        (args.out / "results.md").write_text(table + "\n")  # after the json
        plot_curves(args.out / "curves.png", methods, f"{task_name}: {name}",
                    names=DISPLAY_NAMES)
        print(f"wrote {args.out}/results.json, results.md and curves.png")
    return 0


def cmd_claims(args: argparse.Namespace, argv: list[str]) -> int:
    from ..experiments.claims import claims_table

    text = claims_table(dict(args.runs), args.heldout) + "\n"
    if args.out is not None:
        args.out.write_text(text)
    print(text, end="")
    return 0


def cmd_bench(args: argparse.Namespace, argv: list[str]) -> int:
    import dataclasses

    from ..bench import load_suite
    from ..bench.report import write_report
    from ..bench.run import run_suite, suite_methods
    from ..bench.speed import default_factories, step_costs
    from ..pretrained import pretrained_names
    from ..reporting.results import provenance
    from ..seeding import resolve_device

    suite = load_suite(args.suite)
    if args.tasks:
        suite = suite.subset(args.tasks)
    if args.seeds:
        suite = dataclasses.replace(suite, seeds=args.seeds)
    learned = pretrained_names() if args.optimizers is None else args.optimizers
    methods = suite_methods(suite, learned)
    out = args.out if args.out is not None else Path("runs") / f"bench-{suite.name}"
    check_output_dir(out)
    if (out / "sweep.json").exists():
        raise UsageError(f"--out {out} holds a sweep's run; choose another folder")
    device = resolve_device(args.device)
    outcome = run_suite(suite, methods, out, seed=args.seed, data_root=args.data_root,
                        device=device, progress=not args.no_progress)
    speed = None
    if not args.no_speed:
        learned = {}  # one per variant: the meta-seeds of a variant share its step
        for m in methods:
            if m.kind == "learned":
                learned.setdefault(m.group or m.name, m.source)
        speed = step_costs(default_factories(learned.items()))
    results = write_report(out, suite, methods, outcome, speed=speed,
                           provenance=provenance("phys-l2o " + shlex.join(argv)))
    text = (out / "results.md").read_text()
    print(text.split("## Score per task")[0].rstrip())
    print(f"\nwrote {out}/results.md, results.json and profile.png ({outcome['computed']} "
          f"cells computed, {outcome['reused']} reused); see results.md for every task")
    return 0 if results else 1


def cmd_pack(args: argparse.Namespace, argv: list[str]) -> int:
    from ..pretrained.pack import HERE, note_generalization, pack_runs, pack_sweep

    if not args.runs and args.sweep is None and args.heldout is None:
        raise UsageError("give the output folders of `reproduce` runs to pack, --sweep RUN_DIR "
                         "--variant VARIANT --name NAME, or --heldout BENCH_DIR")
    if args.runs and args.commit is None:
        raise UsageError("the following arguments are required: --commit")
    if args.sweep is not None and (args.variant is None or args.name is None):
        raise UsageError("--sweep needs --variant (the variant to ship) and --name (its "
                         "pretrained name)")
    if args.runs:
        pack_runs(args.runs, args.commit, args.threads, args.into or HERE)
    if args.sweep is not None:
        pack_sweep(args.sweep, args.variant, args.name, args.into or HERE)
    if args.heldout is not None:
        note_generalization(args.heldout, args.into or HERE)
    return 0


#: each command's function.
RUN = {"reproduce": cmd_reproduce, "sweep": cmd_sweep, "train": cmd_train,
       "evaluate": cmd_evaluate, "claims": cmd_claims, "bench": cmd_bench, "pack": cmd_pack}
