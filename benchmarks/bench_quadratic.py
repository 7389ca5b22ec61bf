"""Speed of meta-training and evaluation on the quadratic task, in problem-steps per second.

    python benchmarks/bench_quadratic.py [--batches 1 64] [--device cpu] [--compile]

The reference figures are the original code's on a 2-core CPU, one problem at a time.
"""

from __future__ import annotations

import argparse

import torch
from common import evaluate_rate, meta_train_rate, print_table

from phys_l2o.experiments.paper import paper_learned, paper_optimizer
from phys_l2o.seeding import resolve_device
from phys_l2o.tasks import QuadraticTask

REFERENCE = {("hnn", "meta-train"): 630, ("hnn", "evaluate"): 3900,
             ("lstm", "meta-train"): 475, ("lstm", "evaluate"): 4200}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true",
                        help="run the learned optimizers' step through torch.compile (the "
                        "warm-up run absorbs the compilation)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    task = QuadraticTask()
    print(f"quadratic, 100 steps per trajectory; device {device}, "
          f"{torch.get_num_threads()} threads{', compiled steps' if args.compile else ''}")
    rows = []
    for name in ("hnn", "lstm"):
        optimizer = paper_optimizer("quadratic", name, seed=0).to(device)
        if args.compile:
            optimizer = optimizer.compiled()
        unroll = paper_learned("quadratic")[name]["unroll"]
        for batch in args.batches:
            train = meta_train_rate(optimizer, task, batch, 100, unroll, args.repeats, device)
            ev = evaluate_rate(optimizer, task, batch, 100, args.repeats, device)
            rows.append((f"quadratic, {name}", "meta-train", batch, train,
                         REFERENCE[(name, "meta-train")]))
            rows.append((f"quadratic, {name}", "evaluate", batch, ev,
                         REFERENCE[(name, "evaluate")]))
    print_table(rows)


if __name__ == "__main__":
    main()
