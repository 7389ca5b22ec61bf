"""Speed of the MNIST task: problem-steps per second of meta-training and evaluation.

One problem-step is one optimizee step of one problem (a forward and backward pass of one
784-20-10 sigmoid MLP on a minibatch of 128 digits, plus the optimizer's step). Meta-training
runs whole trajectories as ``meta_train`` does (sampling, truncated BPTT with the paper's
truncation, an Adam meta-step per truncation); evaluation runs ``evaluate``. Every figure is
compared with the original code (one problem at a time, 2-core CPU; ``REFERENCE.md``).

    python benchmarks/bench_mnist.py                      # meta-batches 1, 8, 16
    python benchmarks/bench_mnist.py --batches 8 --only hnn adam --threads 1
    python benchmarks/bench_mnist.py --profile hnn        # where the time of a step goes
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from common import evaluate_rate, meta_train_rate, mnist_root

from phys_l2o import build
from phys_l2o.experiments.paper import paper_baselines, paper_learned, paper_optimizer
from phys_l2o.tasks import MNISTTask

#: problem-steps per second of the original code (meta-training, evaluation).
REFERENCE = {"hnn": (60.0, 150.0), "lstm": (10.0, 80.0), "adam": (None, 260.0)}


def make_optimizer(name: str, compile_step: bool = False):
    """The paper's MNIST configuration of ``name`` (Adam at its sigmoid-net learning rate)."""
    if name == "adam":
        return build(paper_baselines("mnist")["adam"])
    optimizer = paper_optimizer("mnist", name, seed=0)
    return optimizer.compiled() if compile_step else optimizer


def measure(name: str, mode: str, task: MNISTTask, batch: int, steps: int,
            repeats: int, compile_step: bool = False) -> float:
    """Median problem-steps per second over ``repeats`` runs, after a warm-up run."""
    optimizer = make_optimizer(name, compile_step)
    if mode == "meta-train":
        unroll = paper_learned("mnist")[name]["unroll"]
        return meta_train_rate(optimizer, task, batch, steps, unroll, repeats)
    return evaluate_rate(optimizer, task, batch, steps, repeats)


def profile(name: str, task: MNISTTask, batch: int, steps: int, compile_step: bool) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for mode in ("eval", "meta-train") if name != "adam" else ("eval",):
        measure(name, mode, task, batch, steps, 1, compile_step)  # compile outside the profile
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            measure(name, mode, task, batch, steps, 1, compile_step)
        print(f"\n{name} {mode}, meta-batch {batch}, {steps} steps")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None,
                        help="folder holding MNIST/raw/ (default: the offline data folder "
                        "beside the project if present, else PHYS_L2O_DATA or the user cache)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16],
                        help="meta-batch sizes (problems optimized at once)")
    parser.add_argument("--only", nargs="+", choices=sorted(REFERENCE), default=None,
                        help="optimizers to measure (default: all)")
    parser.add_argument("--steps", type=int, default=100, help="optimizee steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per figure")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="run the learned optimizers' step through torch.compile "
                        "(the warm-up run absorbs the compilation)")
    parser.add_argument("--profile", choices=sorted(REFERENCE), default=None,
                        help="print a torch.profiler table for this optimizer instead")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    root = mnist_root(args.data_root)
    start = time.perf_counter()
    task = MNISTTask("sigmoid", steps=args.steps, data_root=root)
    print(f"MNIST sigmoid 784-20-10, batches of {task.batch_size}; data: {task.data_split} "
          f"split, pool of {task.pool_size:,} digits (loaded in {time.perf_counter() - start:.1f}"
          f" s); torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs")
    if task.data_note:
        print(f"note: {task.data_note}")
    if args.profile:
        profile(args.profile, task, max(args.batches), min(args.steps, 20), args.compile)
        return

    names = args.only or list(REFERENCE)
    rows = []
    for name in names:
        for mode, reference in zip(("meta-train", "eval"), REFERENCE[name]):
            if reference is None:
                continue
            figures = {b: measure(name, mode, task, b, args.steps, args.repeats,
                                  args.compile)
                       for b in args.batches}
            rows.append({"optimizer": name, "mode": mode, "reference": reference,
                         "problem_steps_per_s": figures})
            print_row(rows[-1], args.batches, header=len(rows) == 1)

    best = {f"{r['optimizer']} {r['mode']}":
            max(v for b, v in r["problem_steps_per_s"].items() if b >= 8) / r["reference"]
            for r in rows if any(b >= 8 for b in args.batches)}
    if best:
        print("\nspeed-up over the reference at meta-batch >= 8: "
              + ", ".join(f"{k} {v:.1f}x" for k, v in best.items()))
    if args.json:
        args.json.write_text(json.dumps({"threads": torch.get_num_threads(),
                                         "data_split": task.data_split, "rows": rows},
                                        indent=2))


def print_row(row: dict, batches: list[int], header: bool) -> None:
    if header:
        print(f"\n{'optimizer':<9} {'mode':<10} {'reference':>9}  "
              + "  ".join(f"{'B=' + str(b):>16}" for b in batches))
    cells = "  ".join(f"{v:9.0f} ({v / row['reference']:4.1f}x)"
                      for v in row["problem_steps_per_s"].values())
    print(f"{row['optimizer']:<9} {row['mode']:<10} {row['reference']:9.0f}  {cells}", flush=True)


if __name__ == "__main__":
    main()
