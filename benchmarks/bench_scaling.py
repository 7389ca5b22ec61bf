"""How the cost of a problem-step falls as more problems share one step: problem-steps per
second of meta-training and evaluation against the meta-batch, as a table and a plot.

    python benchmarks/bench_scaling.py                                  # quadratic, 1..1024
    python benchmarks/bench_scaling.py --task mnist --batches 1 2 4 8 16 --data-root DIR
    python benchmarks/bench_scaling.py --device cuda --batches 1 16 256 4096
    python benchmarks/bench_scaling.py --plot scaling.png --json scaling.json

One problem-step is one optimizee step of one problem. Each figure is the median of
``--repeats`` timed runs after a warm-up run (which absorbs compilation); the last column is
the cost of a problem-step relative to a meta-batch of 1.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from common import evaluate_rate, meta_train_rate, mnist_root

from phys_l2o.experiments.paper import paper_learned, paper_optimizer
from phys_l2o.seeding import resolve_device
from phys_l2o.tasks import MNISTTask, QuadraticTask


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["quadratic", "mnist"], default="quadratic")
    parser.add_argument("--batches", type=int, nargs="+",
                        default=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024])
    parser.add_argument("--optimizers", nargs="+", choices=["hnn", "lstm"],
                        default=["hnn", "lstm"])
    parser.add_argument("--steps", type=int, default=100, help="optimizee steps per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--data-root", default=None, help="folder holding MNIST/raw/")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="compiled optimizer steps (default on)")
    parser.add_argument("--plot", type=Path, default=None, help="write the plot here (.png)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.task == "quadratic":
        task = QuadraticTask()
    else:
        root = mnist_root(args.data_root)
        task = MNISTTask("sigmoid", steps=args.steps, data_root=root, device=device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} threads of {os.cpu_count()} cores")
    print(f"{args.task}, {args.steps} steps per trajectory; {name}; torch {torch.__version__}"
          f"{', compiled steps' if args.compile else ''}", flush=True)
    print("\n| optimizer | phase | meta-batch | problem-steps/s | us per problem-step "
          "| cost vs meta-batch 1 |\n|---|---|---|---|---|---|", flush=True)
    rows = []
    for opt_name in args.optimizers:
        optimizer = paper_optimizer(args.task, opt_name, seed=0).to(device)
        if args.compile:
            optimizer = optimizer.compiled()
        unroll = paper_learned(args.task)[opt_name]["unroll"]
        for phase in ("meta-train", "evaluate"):
            first = None
            for batch in args.batches:
                if phase == "meta-train":
                    rate = meta_train_rate(optimizer, task, batch, args.steps, unroll,
                                           args.repeats, device)
                else:
                    rate = evaluate_rate(optimizer, task, batch, args.steps, args.repeats,
                                         device)
                first = first or rate
                rows.append({"optimizer": opt_name, "phase": phase, "batch": batch,
                             "problem_steps_per_s": rate})
                print(f"| {opt_name.upper()} | {phase} | {batch} | {rate:,.0f} | "
                      f"{1e6 / rate:,.1f} | {first / rate:.3f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"task": args.task, "device": name,
                                         "torch": torch.__version__, "rows": rows}, indent=2))
    if args.plot:
        plot(rows, args.plot, f"{args.task}, {name}")


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for opt_name in dict.fromkeys(r["optimizer"] for r in rows):
        for phase, style in (("meta-train", "-o"), ("evaluate", "--s")):
            mine = [r for r in rows if r["optimizer"] == opt_name and r["phase"] == phase]
            ax.plot([r["batch"] for r in mine], [r["problem_steps_per_s"] for r in mine],
                    style, label=f"{opt_name.upper()} {phase}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("meta-batch (problems per step)")
    ax.set_ylabel("problem-steps per second")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
