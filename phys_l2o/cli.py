"""The ``phys-l2o`` command: parse and validate, then call the library.

    phys-l2o reproduce quadratic --budget smoke --out runs/quad
    phys-l2o sweep ablations/pieces-quadratic.toml --budget smoke --out runs/pieces
    phys-l2o train --optimizer hnn --task quadratic --out runs/hnn.pt
    phys-l2o train --config my_optimizer.toml --budget smoke --out runs/mine.pt
    phys-l2o evaluate --checkpoint runs/hnn.pt --task quadratic --out runs/eval
    phys-l2o evaluate --optimizer adam --lr 0.1 --task quadratic
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

# light imports only: `phys-l2o --help` answers without loading torch; the commands import
# the library when they run
from .checks import check_output_dir
from .presets import BUDGETS, PAPER_BASELINES, PAPER_TASKS, STEPS
from .protocols import PROTOCOLS, variant_under
from .registry import Spec, as_spec, build, load_toml, lookup, registered

if TYPE_CHECKING:
    from .meta import MetaTrainingInterrupted

DEVICES = ("auto", "cpu", "cuda")
BUDGET_NAMES = sorted({b for sizes in BUDGETS.values() for b in sizes})
#: the tables a config file of `phys-l2o train --config` may hold.
CONFIG_TABLES = ("optimizer", "task", "schedule")


def integer_at_least(minimum: int, what: str):
    """An argparse type: an integer ``>= minimum``, refused with ``what`` it must be."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


positive_int = integer_at_least(1, "a positive integer")
seed_int = integer_at_least(0, "an integer >= 0")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def add_common(p: argparse.ArgumentParser, seed: bool = True) -> None:
    p.add_argument("--data-root", default=None,
                   help="MNIST data root holding MNIST/raw/ (default: $PHYS_L2O_DATA, else "
                        "~/.cache/phys-l2o; downloaded there when missing and online)")
    if seed:
        p.add_argument("--seed", type=seed_int, default=0, help="master seed (default 0)")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="auto: cuda when available, else cpu")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="intra-op threads of this process (default: 1, and at most the cores "
                        "divided by the processes of this machine under torchrun)")


def add_compile(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="run the learned optimizers' step through torch.compile (1.3-2.5x "
                        "faster on MNIST, seconds of compilation per shape; needs a C++ compiler). "
                        "Default: on for the paper budget (a sweep: for cells of at least 200 "
                        "meta-training trajectories) when a compiler is found and the optimizer "
                        "can be compiled")


def method_count(text: str) -> tuple[str, int]:
    """``METHOD=N`` (N >= 1)."""
    method, sep, count = text.rpartition("=")
    if not sep or not method:
        raise argparse.ArgumentTypeError(f"expected METHOD=N, got {text!r}")
    return method, positive_int(count)


def add_max_seeds(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-seeds", type=method_count, action="append", default=[],
                   metavar="METHOD=N",
                   help="run only the first N of the seeds for this learned optimizer (a costly "
                        "one, e.g. lstm=1); repeatable. A later run with a larger N adds its "
                        "cells")


def add_protocol(p: argparse.ArgumentParser, evaluation: bool = True) -> None:
    p.add_argument("--protocol", choices=PROTOCOLS, default="corrected",
                   help="corrected (default): this project's protocol; reference: the original "
                        "code's (D1: the MNIST HNN's q_dot cut from the meta-gradient, D3: the "
                        "truncation window before each update, D5: validation on the test pool, "
                        "D6: the quadratic LSTM's aliased input"
                        + ("; D4: the loss before the last update reported, the LSTM evaluated "
                           "at out_mul 1.0)" if evaluation else
                           "; its evaluation differences belong to reproduce and sweep)"))


def add_again(p: argparse.ArgumentParser, exists: str, resume: str | None) -> None:
    """--overwrite and (where a run can be continued) --resume."""
    again = p.add_mutually_exclusive_group()
    again.add_argument("--overwrite", action="store_true",
                       help=f"start again when {exists}")
    if resume:
        again.add_argument("--resume", action="store_true", help=resume)


#: the commands and their one-line help.
COMMANDS = {"reproduce": "meta-train, evaluate and report one of the paper's experiments",
            "sweep": "run a sweep file (variants x seeds, baselines) and report it; resumable",
            "train": "meta-train one learned optimizer; writes a checkpoint",
            "evaluate": "evaluate a checkpoint or a baseline on test problems"}


def build_parser(full: bool = True) -> argparse.ArgumentParser:
    """The command line; ``full=False`` lists the commands only (no registry, no torch)."""
    parser = argparse.ArgumentParser(
        prog="phys-l2o", allow_abbrev=False,
        description="Learned optimizers with physical priors: reproduce the paper's experiments, "
        "run sweeps, meta-train an optimizer, evaluate one.",
        epilog="`phys-l2o COMMAND --help` lists a command's options.")
    sub = parser.add_subparsers(dest="command", required=True)
    if not full:
        for name, text in COMMANDS.items():
            sub.add_parser(name, help=text, allow_abbrev=False)
        return parser

    rep = sub.add_parser("reproduce", help=COMMANDS["reproduce"], allow_abbrev=False,
                         description="Run the paper's experiment on TASK (its sweep file) and "
                         "write its tables and plots. Running the same command again on the "
                         "same --out continues an unfinished run.")
    rep.add_argument("task", choices=sorted(PAPER_TASKS))
    rep.add_argument("--budget", choices=BUDGET_NAMES, default="paper",
                     help="paper (default): the paper's schedule; smoke: a tiny schedule that "
                          "checks the pipeline in under a minute")
    rep.add_argument("--out", type=Path, default=None,
                     help="output folder (default runs/<task>, runs/<task>-reference for "
                          "--protocol reference)")
    rep.add_argument("--seeds", type=positive_int, default=1,
                     help="meta-training seeds per learned optimizer, from --seed on "
                          "(default 1)")
    rep.add_argument("--meta-batch", type=positive_int, default=None,
                     help="problems per meta-training trajectory (default: the paper's 1)")
    add_protocol(rep)
    add_max_seeds(rep)
    add_again(rep, "the output folder holds another run's results", None)
    add_compile(rep)
    add_common(rep)

    sw = sub.add_parser("sweep", help=COMMANDS["sweep"], allow_abbrev=False,
                        description="Run a sweep file: every variant meta-trained with every "
                        "seed and evaluated, with the baselines, on the same test problems of "
                        "every target. Each finished cell is written at once; running the same "
                        "command again on the same --out resumes. Under `torchrun "
                        "--nproc-per-node N --no-python phys-l2o sweep ...` the cells are "
                        "shared among the processes.")
    sw.add_argument("file", type=Path, help="a sweep file (TOML)")
    sw.add_argument("--budget", default=None,
                    help="a budget of the sweep file (default: its default_budget, else its "
                         "first)")
    sw.add_argument("--seeds", type=positive_int, default=None,
                    help="meta-training seeds 0..N-1 (default: the budget's)")
    sw.add_argument("--out", type=Path, default=None,
                    help="output folder (default runs/<sweep name>, with -reference for "
                         "--protocol reference)")
    add_protocol(sw)
    add_max_seeds(sw)
    add_again(sw, "--out holds a run of another sweep or budget", None)
    add_compile(sw)
    add_common(sw, seed=False)

    tr = sub.add_parser("train", help=COMMANDS["train"], allow_abbrev=False)
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
    add_protocol(tr, evaluation=False)
    add_again(tr, "--out (or its training state) exists",
              "continue the run whose training state is beside --out (X.training.pt; same "
              "options, --epochs may grow)")
    tr.add_argument("--state-every", type=positive_int, default=1,
                    help="epochs between two training states (default 1)")
    tr.add_argument("--allow-untrained", action="store_true",
                    help="write the checkpoint even if validation never improved on the "
                         "untrained weights")
    add_compile(tr)
    add_common(tr)

    ev = sub.add_parser("evaluate", help=COMMANDS["evaluate"], allow_abbrev=False)
    which = ev.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", type=Path, help="a checkpoint written by `train`")
    which.add_argument("--optimizer", choices=sorted(registered("baseline")),
                       help="a hand-designed baseline")
    ev.add_argument("--lr", type=positive_float, default=None,
                    help="baseline learning rate (default: the paper's for the task)")
    ev.add_argument("--task", choices=sorted(registered("task")), default=None,
                    help="the task to evaluate on (default: the checkpoint's own, else "
                         "quadratic)")
    ev.add_argument("--activation", default=None,
                    help="MNIST: the activation of the target net (sigmoid, relu, tanh, ...; "
                         "default sigmoid)")
    ev.add_argument("--problems", type=positive_int, default=100)
    ev.add_argument("--steps", type=positive_int, default=STEPS)
    ev.add_argument("--out", type=Path, default=None,
                    help="folder for results.json, results.md and curves.png (default: print only)")
    add_again(ev, "--out holds earlier results", None)
    add_common(ev)
    return parser


def make_task(spec: Spec | str, args: argparse.Namespace, device, steps: int):
    """Build a task spec where it runs (data folder, device), holding ``steps`` steps."""
    from .sweep import build_task

    task = build_task(as_spec(spec), steps, data_root=args.data_root, device=device)
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
    from .sweep import load_sweep, run_sweep

    sweep = load_sweep(args.file)
    args.out = args.out or default_out(sweep.name, args.protocol)
    return run_and_report(args, argv, lambda: run_sweep(
        sweep, args.budget, out=args.out, seeds=args.seeds, device=args.device,
        threads=args.threads, data_root=args.data_root, compile=args.compile,
        overwrite=args.overwrite, progress=not args.no_progress,
        command="phys-l2o " + shlex.join(argv), protocol=args.protocol,
        max_seeds=dict(args.max_seeds)))


def default_out(name: str, protocol: str) -> Path:
    """``runs/NAME``, or ``runs/NAME-PROTOCOL`` for another protocol than the default."""
    return Path("runs") / (name if protocol == "corrected" else f"{name}-{protocol}")


def cmd_reproduce(args: argparse.Namespace, argv: list[str]) -> int:
    from .reproduce import reproduce

    args.out = args.out or default_out(args.task, args.protocol)
    return run_and_report(args, argv, lambda: reproduce(
        args.task, args.budget, out=args.out, seed=args.seed, seeds=args.seeds,
        device=args.device, progress=not args.no_progress, meta_batch=args.meta_batch,
        data_root=args.data_root, compile=args.compile, threads=args.threads,
        command="phys-l2o " + shlex.join(argv), overwrite=args.overwrite,
        protocol=args.protocol, max_seeds=dict(args.max_seeds)))


def run_and_report(args: argparse.Namespace, argv: list[str], run) -> int:
    """Run a sweep (``run()``, which checks ``--out`` before any work), print its table
    (rank 0), and turn Ctrl-C into one line that says how to continue."""
    from .meta import MetaTrainingInterrupted

    try:
        results = run()
    except MetaTrainingInterrupted:
        command = shlex.join(["phys-l2o", *[a for a in argv if a != "--overwrite"]])
        print(f"phys-l2o: interrupted; the finished cells and the training state of the cell in "
              f"progress are in {args.out}; continue with: {command}", file=sys.stderr)
        return 130
    if results is None:  # a rank other than 0 under torchrun: rank 0 reports
        return 0
    print((args.out / "results.md").read_text())
    print(f"wrote {args.out}/results.json, results.md and plots in {results['seconds']:.0f} s")
    return 0


def cmd_train(args: argparse.Namespace, argv: list[str]) -> int:
    from . import parallel
    from .seeding import resolve_device

    # under torchrun: one data-parallel run over the ranks (parallel.py); rank 0 writes
    with parallel.joined(resolve_device(args.device)) as (ranks, device):
        return train_on(args, argv, ranks, device)


def train_on(args: argparse.Namespace, argv: list[str], ranks, device) -> int:
    from .meta import MetaTrainingDiverged, MetaTrainingInterrupted, meta_train, save_checkpoint
    from .presets import learned_preset
    from .reproduce import build_seeded, paper_schedule, use_compile

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
    optimizer = build_seeded(spec, args.seed, f"init-{spec['type']}")
    try:
        optimizer.compile_step(use_compile(args.compile, args.budget, [optimizer]))
    except RuntimeError as error:
        raise ValueError(str(error)) from None
    task = make_task(task_spec, args, device, schedule.steps)
    try:
        result = meta_train(optimizer, task, schedule, seed=args.seed, device=device,
                            progress=not args.no_progress, state_path=state_path,
                            state_every=args.state_every, resume=args.resume, ranks=ranks)
    except MetaTrainingDiverged as error:
        if not ranks.main:
            return 1
        print(f"error: {error}", file=sys.stderr)
        print(f"nothing was written to {args.out}", file=sys.stderr)
        return 1
    except MetaTrainingInterrupted as error:
        return interrupted(error, argv)
    diverged = f"{result.skipped_updates} of {schedule.epochs * schedule.trajectories} " \
               "trajectories diverged (their truncation was skipped)"
    if not ranks.main:
        return 0
    if result.best_epoch == 0 and not args.allow_untrained:
        print(f"error: the validation loss never improved on the untrained weights "
              f"({result.best_validation:.4g}); {diverged}. Lower the meta learning rate or "
              f"out_mul, or train longer; nothing was written to {args.out} "
              "(--allow-untrained writes the untrained weights)", file=sys.stderr)
        return 1
    save_checkpoint(args.out, optimizer, task=task_name, seed=args.seed, protocol=args.protocol,
                    schedule=schedule.to_dict(), best_epoch=result.best_epoch,
                    best_validation=result.best_validation,
                    diverged_trajectories=result.skipped_updates)
    state_path.unlink(missing_ok=True)
    where = f" on {ranks.world} processes" if ranks.world > 1 else ""
    print(f"best validation loss {result.best_validation:.4g} at epoch {result.best_epoch} "
          f"({result.seconds:.0f} s{where}); {diverged}; wrote {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace, argv: list[str]) -> int:
    import hashlib

    from .meta import compare, load_checkpoint
    from .reporting import method_table, plot_curves, summarize_methods, write_json
    from .reporting.results import provenance
    from .seeding import make_generator, resolve_device

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
        record = {**provenance("phys-l2o " + shlex.join(argv)), "task": task_name,
                  "activation": getattr(task, "activation", None), "seed": args.seed,
                  "steps": args.steps, "problems": args.problems,
                  "data_note": getattr(task, "data_note", None), "optimizers": methods}
        if args.checkpoint is not None:
            record.update(checkpoint=str(args.checkpoint), checkpoint_sha256=hashlib.sha256(
                args.checkpoint.read_bytes()).hexdigest(), trained_on=trained_on)
        write_json(args.out / "results.json", record)
        (args.out / "results.md").write_text(method_table(methods) + "\n")  # after the json
        plot_curves(args.out / "curves.png", methods, f"{task_name}: {name}")
        print(f"wrote {args.out}/results.json, results.md and curves.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv in ([], ["-h"], ["--help"]):
        build_parser(full=False).parse_args(argv)  # prints the help (or the usage) and exits
    args = build_parser().parse_args(argv)
    from .parallel import keep_freed_memory, thread_policy

    if from_command_line:  # a process of its own (parallel.py, "Memory")
        keep_freed_memory()
    try:
        with thread_policy(args.threads):
            if args.command == "reproduce":
                return cmd_reproduce(args, argv)
            if args.command == "sweep":
                return cmd_sweep(args, argv)
            if args.command == "train":
                return cmd_train(args, argv)
            return cmd_evaluate(args, argv)
    except (ValueError, FileNotFoundError) as error:  # CheckpointError, SpecError: ValueErrors
        print(f"phys-l2o: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the command's own reading and writing
        where = f" ({error.filename})" if error.filename else ""
        print(f"phys-l2o: error: {error.strerror or error}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phys-l2o: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
