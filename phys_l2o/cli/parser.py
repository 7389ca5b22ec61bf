"""The ``phys-l2o`` command line: its options and their types (no library work here).

``build_parser(full=False)`` lists the commands without loading the registry or torch, so that
``phys-l2o --help`` answers at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiments.protocols import PROTOCOLS
from ..registry import registered

DEVICES = ("auto", "cpu", "cuda")
#: the tables a config file of `phys-l2o train --config` may hold.
CONFIG_TABLES = ("optimizer", "task", "schedule", "estimator")


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


def out_path(text: str) -> Path:
    """An output path: not empty (an empty --out would write into the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; give a folder or file name")
    return Path(text)


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
                        "Default: on for a meta-training of at least 200 trajectories (the paper "
                        "budget) when a compiler is found and the optimizer can be compiled")


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


def add_timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=positive_float, default=None, metavar="MINUTES",
                   help="under torchrun: how long a rank waits for another that gives no sign "
                        "of life (stopped, hung or cut off) at a collective before it stops "
                        "with an error naming it (default 30)")


def add_workers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=positive_int, default=None,
                   help="worker processes that run the cells side by side, each with --threads "
                        "threads (default: the cores divided by --threads in one process on "
                        "the CPU, else 1; 1: the cells one after another in this process)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="what runs the jobs: local worker processes (default), or Ray tasks "
                        "scheduled on this machine or a Ray cluster (pip install -e \".[ray]\")")
    p.add_argument("--address", default=None,
                   help="with --engine ray: the Ray cluster to join (auto, HOST:PORT); default: "
                        "$RAY_ADDRESS, else Ray started on this machine with --workers jobs "
                        "at once")
    p.add_argument("--no-group", dest="group", action="store_false",
                   help="meta-train every seed alone (default: the seeds of a variant that "
                        "can run as one program are meta-trained together, with the records "
                        "of separate cells)")


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
            "evaluate": "evaluate a checkpoint or a baseline on test problems",
            "claims": "decide which of the paper's claims hold, from reproduce runs",
            "bench": "score optimizers on tasks no optimizer was meta-trained on; resumable",
            "pack": "make the package's pretrained weights from reproduce or sweep runs"}


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
    from ..experiments.paper import PAPER_TASKS, budget_names, budget_sizes

    budgets = budget_names()
    rep = sub.add_parser("reproduce", help=COMMANDS["reproduce"], allow_abbrev=False,
                         description="Run the paper's experiment on TASK (its sweep file) and "
                         "write its tables and plots. Running the same command again on the "
                         "same --out continues an unfinished run.")
    rep.add_argument("task", choices=sorted(PAPER_TASKS))
    rep.add_argument("--budget", choices=budgets, default="paper",
                     help="paper (default): the paper's schedule; smoke: a tiny schedule that "
                          "checks the pipeline in under a minute")
    rep.add_argument("--out", type=out_path, default=None,
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
    add_workers(rep)
    add_compile(rep)
    add_common(rep)

    sw = sub.add_parser("sweep", help=COMMANDS["sweep"], allow_abbrev=False,
                        description="Run a sweep file: every variant meta-trained with every "
                        "seed and evaluated, with the baselines, on the same test problems of "
                        "every target. Each finished cell is written at once; running the same "
                        "command again on the same --out resumes. The cells run side by side "
                        "in worker processes (--workers), or as Ray tasks on this machine or a "
                        "Ray cluster (--engine ray).")
    sw.add_argument("file", type=Path, help="a sweep file (TOML)")
    sw.add_argument("--budget", default=None,
                    help="a budget of the sweep file (default: its default_budget, else its "
                         "first)")
    sw.add_argument("--seeds", type=positive_int, default=None,
                    help="meta-training seeds 0..N-1 (default: the budget's)")
    sw.add_argument("--out", type=out_path, default=None,
                    help="output folder (default runs/<sweep name>, with -reference for "
                         "--protocol reference)")
    add_protocol(sw)
    add_max_seeds(sw)
    add_again(sw, "--out holds a run of another sweep or budget", None)
    add_workers(sw)
    add_compile(sw)
    add_common(sw, seed=False)

    tr = sub.add_parser("train", help=COMMANDS["train"], allow_abbrev=False)
    which = tr.add_mutually_exclusive_group()
    which.add_argument("--optimizer", choices=sorted(registered("optimizer")), default=None,
                       help="a registered learned optimizer with its paper (or default) "
                            "settings (default: hnn)")
    which.add_argument("--config", type=Path, default=None,
                       help="a TOML file: an [optimizer] table (a spec, as phys_l2o.spec_of "
                            "gives it), optionally a [task] table (a task spec: a mixture of "
                            "tasks too), a [schedule] table (overrides of the budget's "
                            "schedule) and an [estimator] table (es, pes; default: truncated "
                            "backpropagation)")
    tr.add_argument("--task", choices=sorted(registered("task")), default=None,
                    help="the task to meta-train on (default: quadratic, or the config's "
                         "[task])")
    tr.add_argument("--budget", choices=budgets, default="paper",
                    help="the schedule to start from (default paper); the options below "
                         "override it")
    tr.add_argument("--out", type=out_path, required=True, help="checkpoint file to write (.pt)")
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
    add_timeout(tr)
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
    ev.add_argument("--steps", type=positive_int,
                    default=budget_sizes("quadratic", "paper")["steps"])
    ev.add_argument("--out", type=out_path, default=None,
                    help="folder for results.json, results.md and curves.png (default: print only)")
    add_again(ev, "--out holds earlier results", None)
    add_common(ev)

    cl = sub.add_parser("claims", help=COMMANDS["claims"], allow_abbrev=False,
                        description="Decide each of the paper's claims by paired intervals over "
                        "meta-seeds and test problems, from the cells of `reproduce quadratic` "
                        "and `reproduce mnist` runs, one pair of folders per protocol; print the "
                        "table.")
    cl.add_argument("runs", nargs="+", type=protocol_runs, metavar="PROTOCOL=QUAD_DIR,MNIST_DIR")
    cl.add_argument("--out", type=out_path, default=None, help="also write the table there")
    cl.add_argument("--heldout", type=Path, default=None, metavar="BENCH_DIR",
                    help="a `phys-l2o bench heldout` folder that scored the shipped optimizers: "
                         "adds the claim that the HNN generalizes better than the LSTM")

    bn = sub.add_parser("bench", help=COMMANDS["bench"], allow_abbrev=False,
                        description="Score learned optimizers on a held-out suite against "
                        "Adam, SGD with momentum and RMSprop tuned per task (and Adam at lr "
                        "1e-3 untuned): every method on the same problems of every task, "
                        "scores normalized by tuned Adam, interquartile means with stratified "
                        "bootstrap intervals. Every finished cell is kept in --out: running "
                        "again (with more optimizers, say) reuses the tuning and every cell "
                        "whose task and method are unchanged.")
    bn.add_argument("suite", help="a shipped suite (heldout) or the path of a suite file (TOML)")
    bn.add_argument("--optimizers", nargs="*", default=None, metavar="NAME_OR_CHECKPOINT",
                    help="pretrained names or checkpoint files, NAME=CHECKPOINT to name one "
                         "(default: every shipped optimizer; none: the baselines only)")
    bn.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                    help="only these tasks of the suite (default: all)")
    bn.add_argument("--seeds", type=positive_int, default=None,
                    help="evaluation problems per task (default: the suite's)")
    bn.add_argument("--out", type=out_path, default=None,
                    help="output folder (default runs/bench-<suite>)")
    bn.add_argument("--no-speed", action="store_true",
                    help="skip the step-cost measurement on a one-million-parameter MLP")
    add_common(bn)

    pk = sub.add_parser("pack", help=COMMANDS["pack"], allow_abbrev=False,
                        description="Write each learned optimizer of each run (its first "
                        "meta-seed's best weights) as <name>-<task>.pt with its manifest entry.")
    pk.add_argument("runs", type=Path, nargs="*", help="output folders of `reproduce`")
    pk.add_argument("--sweep", type=Path, default=None, metavar="RUN_DIR",
                    help="a sweep's run folder: ship its --variant as --name (the meta-seed "
                         "best on the sweep's own test targets)")
    pk.add_argument("--variant", default=None, help="the variant of --sweep to ship")
    pk.add_argument("--name", default=None, help="the pretrained name to ship --variant as")
    pk.add_argument("--commit", default=None,
                    help="the commit the runs were made at (required with runs; a sweep's "
                         "cells record theirs)")
    pk.add_argument("--heldout", type=Path, default=None, metavar="BENCH_DIR",
                    help="a `phys-l2o bench heldout` folder that scored the shipped weights: "
                         "write what it found into each one's manifest entry "
                         "(pretrained_info(name)['generalization'])")
    pk.add_argument("--threads", type=positive_int, default=None,
                    help="the torch threads the runs used (default: as their results.json "
                         "records)")
    pk.add_argument("--into", type=out_path, default=None,
                    help="the folder to write into (default: the package's pretrained weights)")
    return parser


def protocol_runs(text: str) -> tuple[str, list[str]]:
    """``PROTOCOL=QUAD_DIR,MNIST_DIR``."""
    from ..experiments.claims import parse_runs

    try:
        return next(iter(parse_runs([text]).items()))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
