"""Why some epochs of the MNIST LSTM's meta-training are slower: time every epoch, keep every
epoch's weights, then time the LSTM's step at chosen epochs' weights and look for subnormal
floats (denormals), which the CPU computes on much more slowly than normal ones.

    # 1. meta-train the paper's MNIST LSTM (seed 0), writing each epoch's weights and time;
    #    the same command again goes on from the last epoch (its training state)
    python benchmarks/lstm_epochs.py train --epochs 25 --out lstm-epochs
    # 2. at chosen epochs' weights: problem-steps/s (with and without flushing subnormals to
    #    zero) and the share of subnormal values in the optimizee's gradients
    python benchmarks/lstm_epochs.py profile --out lstm-epochs --epochs 1 15 20

One thread by default (``--threads``), as the sweeps run their cells. The schedule is the
paper budget's (20 trajectories of 100 steps per epoch, meta-batch 1, unroll 20).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import evaluate_rate, meta_train_rate, mnist_root

from phys_l2o.experiments.paper import learned_preset, paper_optimizer
from phys_l2o.meta import Callback, Checkpointing, MetaTrainer, Schedule
from phys_l2o.meta.state import load_training_state
from phys_l2o.optimizers.base import advance
from phys_l2o.seeding import make_generator
from phys_l2o.tasks import MNISTTask

#: the smallest normal float32; nonzero values below it in magnitude are subnormal
TINY = torch.finfo(torch.float32).tiny


class EveryEpoch(Callback):
    """Writes each epoch's weights and wall time into ``out``."""

    def __init__(self, out: Path) -> None:
        self.out, self.last = out, time.perf_counter()

    def on_epoch(self, trainer, state) -> None:
        now = time.perf_counter()
        torch.save(state.optimizer.state_dict(), self.out / f"epoch-{state.epoch}.pt")
        with (self.out / "epochs.jsonl").open("a") as log:
            log.write(json.dumps({"epoch": state.epoch, "seconds": now - self.last,
                                  "validation": state.result.history[-1]["validation"],
                                  "skipped": state.result.skipped_updates}) + "\n")
        print(f"epoch {state.epoch}: {now - self.last:.1f} s", flush=True)
        self.last = now


def train(args, task) -> None:
    """Meta-train, or go on from the training state in ``out`` (run the same command again)."""
    args.out.mkdir(parents=True, exist_ok=True)
    preset = learned_preset("mnist", "lstm")
    optimizer = paper_optimizer("mnist", "lstm", seed=args.seed)
    state_path = args.out / "training-state.pt"
    if not state_path.is_file():
        torch.save(optimizer.state_dict(), args.out / "epoch-0.pt")
    schedule = Schedule(epochs=args.epochs, trajectories=20, meta_batch=1, steps=100,
                        unroll=preset["unroll"], meta_lr=preset["meta_lr"],
                        validation_problems=20)
    trainer = MetaTrainer(optimizer, task, schedule, seed=args.seed,
                          callbacks=[EveryEpoch(args.out), Checkpointing(state_path)])
    payload = (load_training_state(state_path, optimizer=optimizer, schedule=schedule,
                                   seed=args.seed, task=task)
               if state_path.is_file() else None)
    trainer.run(trainer.init(payload))


def subnormal_share(optimizer, task, steps: int) -> dict[str, float]:
    """The share of subnormal values in the optimizee's gradients and in the LSTM's output
    over ``steps`` steps of one problem (no meta-gradients)."""
    problems = task.sample(1, make_generator(0, "bench-eval"))
    params = task.init_params(problems)
    state = optimizer.init_state(params, task.segments)
    _, grad = task.loss_and_grad(params, problems, 0)
    counts = {"gradient": 0, "update": 0}
    total = 0
    with torch.no_grad():
        for t in range(1, steps + 1):
            before = params
            params, state = advance(optimizer, params, grad, state)
            update = params - before
            _, grad = task.loss_and_grad(params, problems, t)
            for name, x in (("gradient", grad), ("update", update)):
                counts[name] += int(((x != 0) & (x.abs() < TINY)).sum())
            total += grad.numel()
    return {name: count / total for name, count in counts.items()}


def profile(args, task) -> None:
    print("| epoch | phase | problem-steps/s | with subnormals flushed to zero | "
          "subnormal share: gradient | update |\n|---|---|---|---|---|---|", flush=True)
    for epoch in args.epochs:
        optimizer = paper_optimizer("mnist", "lstm", seed=args.seed)
        optimizer.load_state_dict(torch.load(args.out / f"epoch-{epoch}.pt"))
        share = subnormal_share(optimizer, task, args.steps)
        unroll = learned_preset("mnist", "lstm")["unroll"]
        for phase in ("evaluate", "meta-train"):
            rates = []
            for flush in (False, True):
                torch.set_flush_denormal(flush)
                if phase == "evaluate":
                    rates.append(evaluate_rate(optimizer, task, 1, args.steps, args.repeats))
                else:
                    rates.append(meta_train_rate(optimizer, task, 1, args.steps, unroll,
                                                 args.repeats))
            torch.set_flush_denormal(False)
            print(f"| {epoch} | {phase} | {rates[0]:,.0f} | {rates[1]:,.0f} | "
                  f"{share['gradient']:.2%} | {share['update']:.2%} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["train", "profile"])
    parser.add_argument("--out", type=Path, required=True, help="the folder of the weights")
    parser.add_argument("--epochs", type=int, nargs="+", default=[25],
                        help="train: the epochs to run (one number); profile: the epochs whose "
                             "weights to time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-root", default=None, help="folder holding MNIST/raw/")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    task = MNISTTask("sigmoid", steps=args.steps, pool="train",
                     data_root=mnist_root(args.data_root))
    if args.mode == "train":
        args.epochs = args.epochs[0]
        train(args, task)
    else:
        profile(args, task)


if __name__ == "__main__":
    main()
