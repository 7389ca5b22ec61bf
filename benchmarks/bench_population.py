"""Many optimizers as one program: problem-steps per second of a population of HNNs (one
``Stacked`` optimizer, each member with its own weights) against the same members run one
after another, on the quadratic and the MNIST MLP, as a table and a plot.

    python benchmarks/bench_population.py                              # both tasks, 1..128
    python benchmarks/bench_population.py --tasks quadratic --members 1 8 32 128 --threads 2
    python benchmarks/bench_population.py --plot population.png --json population.json

Each member optimizes ``--meta-batch`` problems of its own (1: the paper's budget), so a
population of ``M`` runs ``M x meta-batch`` problems per step. *evaluate* is a frozen rollout
(an evolution-strategies population's work); *meta-train* is truncated backpropagation with
one meta-step per member every ``unroll`` steps (a group of seeds, ``meta.group``). *alone* is
one member by itself (the plain optimizer, no stack): the rate the population would have if its
members ran one after another. Each figure is the median of ``--repeats`` timed runs after a
warm-up run (which absorbs compilation).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from common import evaluate_rate, meta_train_rate, mnist_root

from phys_l2o.experiments.paper import paper_learned, paper_optimizer
from phys_l2o.optimizers import Stacked
from phys_l2o.tasks import MNISTTask, QuadraticTask

PHASES = ("meta-train", "evaluate")


def rate(optimizer, task, batch: int, phase: str, args, unroll: int) -> float:
    if phase == "meta-train":
        return meta_train_rate(optimizer, task, batch, args.steps, unroll, args.repeats)
    return evaluate_rate(optimizer, task, batch, args.steps, args.repeats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=["quadratic", "mnist"],
                        default=["quadratic", "mnist"])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--meta-batch", type=int, default=1, help="problems per member")
    parser.add_argument("--steps", type=int, default=100, help="optimizee steps per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--data-root", default=None, help="folder holding MNIST/raw/")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="compiled steps, for the stack and the member alone (default on)")
    parser.add_argument("--plot", type=Path, default=None, help="write the plot here (.png)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    where = f"CPU, {torch.get_num_threads()} threads of {os.cpu_count()} cores"
    print(f"HNN populations, {args.meta_batch} problem(s) per member, {args.steps} steps per "
          f"run; {where}; torch {torch.__version__}{', compiled' if args.compile else ''}",
          flush=True)
    print("\n| task | phase | members | problem-steps/s | alone | speed-up over alone |\n"
          "|---|---|---|---|---|---|", flush=True)
    rows = []
    for task_name in args.tasks:
        task = QuadraticTask() if task_name == "quadratic" else MNISTTask(
            "sigmoid", steps=args.steps, data_root=mnist_root(args.data_root))
        unroll = paper_learned(task_name)["hnn"]["unroll"]
        alone_optimizer = paper_optimizer(task_name, "hnn", seed=0)
        alone_runner = alone_optimizer.compiled() if args.compile else alone_optimizer
        for phase in PHASES:
            alone = rate(alone_runner, task, args.meta_batch, phase, args, unroll)
            for count in args.members:
                stacked = Stacked([paper_optimizer(task_name, "hnn", seed=s)
                                   for s in range(count)])
                runner = stacked.compiled() if args.compile else stacked
                measured = rate(runner, task, count * args.meta_batch, phase, args, unroll)
                rows.append({"task": task_name, "phase": phase, "members": count,
                             "problem_steps_per_s": measured, "alone": alone})
                print(f"| {task_name} | {phase} | {count} | {measured:,.0f} | {alone:,.0f} | "
                      f"{measured / alone:.1f}x |", flush=True)
                torch._dynamo.reset()  # each population size compiles afresh
    if args.json:
        args.json.write_text(json.dumps({"device": where, "torch": torch.__version__,
                                         "compiled": args.compile, "rows": rows}, indent=2))
    if args.plot:
        plot(rows, args.plot, where)


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.0), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for phase, style in (("meta-train", "-o"), ("evaluate", "--s")):
            mine = [r for r in rows if r["task"] == task and r["phase"] == phase]
            line, = ax.plot([r["members"] for r in mine],
                            [r["problem_steps_per_s"] for r in mine], style,
                            label=f"{phase}, one program")
            ax.axhline(mine[0]["alone"], color=line.get_color(), linestyle=":",
                       label=f"{phase}, one member alone")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("HNNs in the population")
        ax.set_ylabel("problem-steps per second")
        ax.set_title(f"{task}, {title}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
