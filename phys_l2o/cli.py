"""The ``phys-l2o`` command: parse and validate, then call the library.

    phys-l2o reproduce quadratic --budget smoke --out runs/quad
    phys-l2o train --optimizer hnn --task quadratic --out runs/hnn.pt
    phys-l2o train --config my_optimizer.toml --budget smoke --out runs/mine.pt
    phys-l2o evaluate --checkpoint runs/hnn.pt --task quadratic --out runs/eval
    phys-l2o evaluate --optimizer adam --lr 0.1 --task quadratic
"""

from __future__ import annotations

import argparse
import inspect
import shlex
import sys
from pathlib import Path
from typing import Any

from .meta import MetaTrainingDiverged, compare, load_checkpoint, meta_train
from .meta.checkpoint import save_checkpoint
from .presets import BUDGETS, PAPER_BASELINES, PAPER_TASKS, STEPS
from .registry import Spec, as_spec, build, load_toml, lookup, registered
from .reporting import method_table, plot_curves, summarize_methods, write_json
from .seeding import make_generator, resolve_device

DEVICES = ("auto", "cpu", "cuda")
BUDGET_NAMES = sorted({b for sizes in BUDGETS.values() for b in sizes})
#: the tables a config file of `phys-l2o train --config` may hold.
CONFIG_TABLES = ("optimizer", "task", "schedule")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None,
                   help="MNIST data root holding MNIST/raw/ (default: $PHYS_L2O_DATA, else "
                        "~/.cache/phys-l2o; downloaded there when missing and online)")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="auto: cuda when available, else cpu")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_compile(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="run the learned optimizers' step through torch.compile (1.3-2.5x "
                        "faster on MNIST, seconds of compilation per shape; needs a C++ compiler). "
                        "Default: on for the paper budget when a compiler is found")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phys-l2o", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    rep = sub.add_parser("reproduce", help="meta-train, evaluate and report one of the paper's "
                                           "experiments")
    rep.add_argument("task", choices=sorted(PAPER_TASKS))
    rep.add_argument("--budget", choices=BUDGET_NAMES, default="paper",
                     help="paper (default): the paper's schedule; smoke: a tiny schedule that "
                          "checks the pipeline in under a minute")
    rep.add_argument("--out", type=Path, default=None,
                     help="output folder (default runs/<task>)")
    rep.add_argument("--meta-batch", type=positive_int, default=None,
                     help="problems per meta-training trajectory (default: the paper's 1)")
    add_compile(rep)
    add_common(rep)

    tr = sub.add_parser("train", help="meta-train one learned optimizer; writes a checkpoint")
    which = tr.add_mutually_exclusive_group()
    which.add_argument("--optimizer", choices=sorted(registered("optimizer")), default=None,
                       help="a registered learned optimizer with its paper (or default) "
                            "settings (default: hnn)")
    which.add_argument("--config", type=Path, default=None,
                       help="a TOML file: an [optimizer] table (a spec, as phys_l2o.spec_of "
                            "gives it), optionally a [task] table (a task spec) and a "
                            "[schedule] table (overrides of the budget's schedule)")
    tr.add_argument("--task", choices=sorted(registered("task")), default=None,
                    help="the task to meta-train on (default: quadratic, or the config's "
                         "[task])")
    tr.add_argument("--budget", choices=BUDGET_NAMES, default="paper",
                    help="the schedule to start from (default paper); the options below "
                         "override it")
    tr.add_argument("--out", type=Path, required=True, help="checkpoint file to write (.pt)")
    for name in ("epochs", "trajectories", "meta-batch", "steps", "unroll",
                 "validation-problems"):
        tr.add_argument(f"--{name}", type=positive_int, default=None)
    tr.add_argument("--meta-lr", type=positive_float, default=None)
    tr.add_argument("--out-mul", type=positive_float, default=None)
    add_compile(tr)
    add_common(tr)

    ev = sub.add_parser("evaluate", help="evaluate a checkpoint or a baseline on test problems")
    which = ev.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", type=Path, help="a checkpoint written by `train`")
    which.add_argument("--optimizer", choices=sorted(registered("baseline")),
                       help="a hand-designed baseline")
    ev.add_argument("--lr", type=positive_float, default=None,
                    help="baseline learning rate (default: the paper's for the task)")
    ev.add_argument("--task", choices=sorted(registered("task")), default="quadratic")
    ev.add_argument("--activation", default="sigmoid",
                    help="MNIST: the activation of the target net (sigmoid, relu, tanh, ...)")
    ev.add_argument("--problems", type=positive_int, default=100)
    ev.add_argument("--steps", type=positive_int, default=STEPS)
    ev.add_argument("--out", type=Path, default=None,
                    help="folder for results.json, results.md and curves.png (default: print only)")
    add_common(ev)
    return parser


def make_task(spec: Spec | str, args: argparse.Namespace, device, steps: int):
    """Build a task spec where it runs (data folder, device), holding ``steps`` steps."""
    spec = as_spec(spec)
    cls = lookup(spec["type"], "task")
    if "steps" in inspect.signature(cls.__init__).parameters and "steps" not in spec:
        spec["steps"] = steps
    task = build(spec, "task", data_root=args.data_root, device=device)
    note = getattr(task, "data_note", None)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return task


def target_key(task) -> str:
    """The key of the paper's baseline learning rates for a task (MNIST: per activation)."""
    if task.name == "mnist":
        return "mnist-relu" if task.activation == "relu" else "mnist-sigmoid"
    return task.name if task.name in PAPER_BASELINES else "quadratic"


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


def cmd_reproduce(args: argparse.Namespace, argv: list[str]) -> int:
    from .reproduce import reproduce

    args.out = args.out or Path("runs") / args.task
    results = reproduce(args.task, args.budget, out=args.out, seed=args.seed, device=args.device,
                        progress=not args.no_progress, meta_batch=args.meta_batch,
                        data_root=args.data_root, compile=args.compile,
                        command="phys-l2o " + shlex.join(argv))
    print((args.out / "results.md").read_text())
    print(f"wrote {args.out}/results.json, results.md and plots in {results['seconds']:.0f} s")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .presets import learned_preset
    from .reproduce import build_seeded, paper_schedule, use_compile

    device = resolve_device(args.device)
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
    flags = {"epochs": args.epochs, "trajectories": args.trajectories,
             "meta_batch": args.meta_batch, "steps": args.steps, "unroll": args.unroll,
             "meta_lr": args.meta_lr, "validation_problems": args.validation_problems}
    try:
        schedule = paper_schedule(task_name, spec, args.budget,
                                  **{**config.get("schedule", {}),
                                     **{k: v for k, v in flags.items() if v is not None}})
    except TypeError as error:
        raise ValueError(f"bad [schedule] in {args.config}: {error}") from None
    optimizer = build_seeded(spec, args.seed, f"init-{spec['type']}")
    try:
        optimizer.compile_step(use_compile(args.compile, args.budget, [optimizer]))
    except RuntimeError as error:
        raise ValueError(str(error)) from None
    task = make_task(task_spec, args, device, schedule.steps)
    try:
        result = meta_train(optimizer, task, schedule, seed=args.seed, device=device,
                            progress=not args.no_progress)
    except MetaTrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        print(f"nothing was written to {args.out}", file=sys.stderr)
        return 1
    save_checkpoint(args.out, optimizer, task=task_name, seed=args.seed,
                    schedule=schedule.to_dict(), best_epoch=result.best_epoch,
                    best_validation=result.best_validation)
    print(f"best validation loss {result.best_validation:.4g} at epoch {result.best_epoch} "
          f"({result.seconds:.0f} s); wrote {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    task_spec: Spec = {"type": args.task}
    if args.task == "mnist":
        task_spec.update(activation=args.activation, pool="test")
    task = make_task(task_spec, args, device, args.steps)
    if args.checkpoint is not None:
        optimizer, _ = load_checkpoint(args.checkpoint, device)
    else:
        spec = dict(PAPER_BASELINES[target_key(task)][args.optimizer])
        if args.lr is not None:
            spec["lr"] = args.lr
        optimizer = build(spec, "baseline")
    name = optimizer.name
    problems = task.sample(args.problems, make_generator(args.seed, "test"), device)
    runs = compare({name: optimizer}, task, problems, args.steps, progress=not args.no_progress)
    methods = summarize_methods(runs, {name: optimizer.num_params()})
    print(method_table(methods))
    if args.out is not None:
        write_json(args.out / "results.json",
                   {"task": args.task, "seed": args.seed, "steps": args.steps,
                    "problems": args.problems, "optimizers": methods})
        (args.out / "results.md").write_text(method_table(methods) + "\n")
        plot_curves(args.out / "curves.png", methods, f"{args.task}: {name}")
        print(f"wrote {args.out}/results.json, results.md and curves.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "reproduce":
            return cmd_reproduce(args, argv)
        if args.command == "train":
            return cmd_train(args)
        return cmd_evaluate(args)
    except (ValueError, FileNotFoundError) as error:  # CheckpointError, SpecError: ValueErrors
        print(f"phys-l2o: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
