"""The ``phys-l2o`` command: parse and validate, then call the library.

    phys-l2o reproduce quadratic --budget smoke --out runs/quad
    phys-l2o train --optimizer hnn --task quadratic --out runs/hnn.pt
    phys-l2o evaluate --checkpoint runs/hnn.pt --task quadratic --out runs/eval
    phys-l2o evaluate --optimizer adam --lr 0.1 --task quadratic
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .meta import MetaTrainingDiverged, compare, load_checkpoint, meta_train
from .meta.checkpoint import save_checkpoint
from .optimizers import BASELINES, LEARNED_OPTIMIZERS, TorchOptimizer
from .presets import BASELINE_LR, STEPS
from .reporting import method_table, plot_curves, summarize_methods, write_json
from .seeding import make_generator, resolve_device

TASKS = ("quadratic", "mnist")
DEVICES = ("auto", "cpu", "cuda")


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
    rep.add_argument("task", choices=TASKS)
    rep.add_argument("--budget", choices=("smoke", "paper"), default="paper",
                     help="paper (default): the paper's schedule; smoke: a tiny schedule that "
                          "checks the pipeline in under a minute")
    rep.add_argument("--out", type=Path, default=None,
                     help="output folder (default runs/<task>)")
    rep.add_argument("--meta-batch", type=positive_int, default=None,
                     help="problems per meta-training trajectory (default: the paper's 1)")
    add_compile(rep)
    add_common(rep)

    tr = sub.add_parser("train", help="meta-train one learned optimizer; writes a checkpoint")
    tr.add_argument("--optimizer", choices=sorted(LEARNED_OPTIMIZERS), default="hnn")
    tr.add_argument("--task", choices=TASKS, default="quadratic")
    tr.add_argument("--budget", choices=("smoke", "paper"), default="paper",
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
    which.add_argument("--optimizer", choices=sorted(BASELINES), help="a hand-designed baseline")
    ev.add_argument("--lr", type=positive_float, default=None,
                    help="baseline learning rate (default: the paper's for the task)")
    ev.add_argument("--task", choices=TASKS, default="quadratic")
    ev.add_argument("--activation", default="sigmoid",
                    help="MNIST: the activation of the target net (sigmoid, relu, tanh, ...)")
    ev.add_argument("--problems", type=positive_int, default=100)
    ev.add_argument("--steps", type=positive_int, default=STEPS)
    ev.add_argument("--out", type=Path, default=None,
                    help="folder for results.json, results.md and curves.png (default: print only)")
    add_common(ev)
    return parser


def make_task(name: str, args: argparse.Namespace, device, steps: int, pool: str = "train"):
    from .tasks import MNISTTask, QuadraticTask

    if name == "quadratic":
        return QuadraticTask()
    if name == "mnist":
        task = MNISTTask(getattr(args, "activation", "sigmoid"), pool=pool, steps=steps,
                         data_root=args.data_root, device=device)
        if task.data_note:
            print(f"note: {task.data_note}", file=sys.stderr)
        return task
    raise ValueError(f"unknown task {name!r}; choose from {list(TASKS)}")


def baseline_lr(task, name: str) -> float:
    """The paper's learning rate of a baseline for a task (MNIST: per activation)."""
    key = task.name
    if key == "mnist":
        key = "mnist-relu" if task.activation == "relu" else "mnist-sigmoid"
    return BASELINE_LR[key][name]


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
    from .reproduce import paper_optimizer, paper_schedule, use_compile

    device = resolve_device(args.device)
    schedule = paper_schedule(args.task, args.optimizer, args.budget, epochs=args.epochs,
                              trajectories=args.trajectories, meta_batch=args.meta_batch,
                              steps=args.steps, unroll=args.unroll, meta_lr=args.meta_lr,
                              validation_problems=args.validation_problems)
    optimizer = paper_optimizer(args.task, args.optimizer, args.seed, out_mul=args.out_mul)
    optimizer.compile_step(use_compile(args.compile, args.budget))
    task = make_task(args.task, args, device, schedule.steps)
    try:
        result = meta_train(optimizer, task, schedule, seed=args.seed, device=device,
                            progress=not args.no_progress)
    except MetaTrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        print(f"nothing was written to {args.out}", file=sys.stderr)
        return 1
    optimizer.load_state_dict(result.best_state)
    save_checkpoint(args.out, optimizer, task=args.task, seed=args.seed,
                    schedule=schedule.to_dict(), best_epoch=result.best_epoch,
                    best_validation=result.best_validation)
    print(f"best validation loss {result.best_validation:.4g} at epoch {result.best_epoch} "
          f"({result.seconds:.0f} s); wrote {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    task = make_task(args.task, args, device, args.steps, pool="test")
    if args.checkpoint is not None:
        optimizer, _ = load_checkpoint(args.checkpoint, device)
        name = optimizer.name
    else:
        name = args.optimizer
        optimizer = TorchOptimizer(name, args.lr or baseline_lr(task, name))
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
    except (ValueError, FileNotFoundError) as error:  # CheckpointError is a ValueError
        print(f"phys-l2o: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
