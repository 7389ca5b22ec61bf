"""How the absolute MNIST losses depend on the size of the digit pool the problems draw from.

Offline, only MNIST's test split (10,000 digits) is available, and its halves (5,000 digits
each) serve as the meta-training and the test pool, where the paper halves the 60,000-digit
training split (30,000 each). Each problem trains a fresh 784-20-10 MLP for 100 steps on
minibatches of 128 digits of its pool and reports its minibatch loss, so a smaller pool is
seen more often per problem and its loss is lower. This script evaluates the paper's
baselines (their MNIST learning rates) on the same 100 test-pool problems drawn from the first
N digits of the pool, for several N, and prints the mean final loss:

    python benchmarks/mnist_pool.py --data-root DIR
    python benchmarks/mnist_pool.py --data-root DIR --pools 1250 5000 --only adam --problems 20

The largest pool, 10,000, is the whole split (both halves): more digits than the test pool
holds, the closest this machine comes to the paper's 30,000.
"""

from __future__ import annotations

import argparse

import torch
from common import mnist_root

from phys_l2o import build
from phys_l2o.experiments.paper import paper_baselines
from phys_l2o.meta import evaluate
from phys_l2o.seeding import make_generator
from phys_l2o.tasks import MNISTTask


def final_loss(name: str, pool: int, args) -> float:
    task = MNISTTask(args.activation, pool="test", steps=args.steps,
                     data_root=mnist_root(args.data_root))
    if pool > task.pool_size:  # the whole split: both halves
        everything = torch.randperm(2 * task.pool_size,
                                    generator=torch.Generator().manual_seed(0))
        task.pool_indices = everything[:pool]
    else:
        task.pool_indices = task.pool_indices[:pool]
    problems = task.sample(args.problems, make_generator(0, "mnist-pool"), "cpu")
    baselines = paper_baselines({"type": "mnist", "activation": args.activation})
    losses = evaluate(build(baselines[name]), task, problems, args.steps)
    return float(losses[:, -1].double().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--pools", type=int, nargs="+", default=[1250, 2500, 5000, 10000])
    parser.add_argument("--only", nargs="+", default=["adam", "rmsprop", "sgd", "nag"])
    parser.add_argument("--activation", default="sigmoid")
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"mean final loss after {args.steps} steps, {args.activation} net, "
          f"{args.problems} problems per cell, by the digits in the pool")
    print("| baseline | " + " | ".join(f"{p:,} digits" for p in args.pools) + " |")
    print("|---|" + "---|" * len(args.pools))
    for name in args.only:
        row = [f"{final_loss(name, pool, args):.3f}" for pool in args.pools]
        print(f"| {name} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
