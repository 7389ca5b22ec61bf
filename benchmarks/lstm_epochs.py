"""Why some epochs of the MNIST LSTM's meta-training are slower: time every epoch, keep every
epoch's weights, then time the LSTM's step at chosen epochs' weights and look for subnormal
floats (denormals), which the CPU computes on much more slowly than normal ones.

    # 1. meta-train the paper's MNIST LSTM (seed 0), writing each epoch's weights and time;
    #    the same command again goes on from the last epoch (its training state)
    python benchmarks/lstm_epochs.py train --epochs 25 --out lstm-epochs
    # 2. at chosen epochs' weights: problem-steps/s (with and without flushing subnormals to
    #    zero), the milliseconds of the optimizer's step and of the task's gradient, and the
    #    share of subnormal values in what they compute
    python benchmarks/lstm_epochs.py profile --out lstm-epochs --epochs 1 15 20

One thread by default (``--threads``), as the sweeps run their cells; eager unless
``--compile``. The schedule is the paper budget's (20 trajectories of 100 steps per epoch,
meta-batch 1, unroll 20).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import evaluate_rate, meta_train_rate, mnist_root
from torch import Tensor

from phys_l2o.experiments.paper import learned_preset, paper_optimizer
from phys_l2o.meta import Callback, Checkpointing, MetaTrainer, Monitors, Schedule
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
    # the ReLU net watched after every epoch, as `phys-l2o reproduce mnist` does (`--monitor`)
    watched = ({"relu": MNISTTask("relu", steps=args.steps, pool="train",
                                  data_root=mnist_root(args.data_root))} if args.monitor else {})
    trainer = MetaTrainer(optimizer, task, schedule, seed=args.seed, compile=args.compile,
                          callbacks=[Monitors(watched), EveryEpoch(args.out),
                                     Checkpointing(state_path)])
    payload = (load_training_state(state_path, optimizer=optimizer, schedule=schedule,
                                   seed=args.seed, task=task)
               if state_path.is_file() else None)
    trainer.run(trainer.init(payload))


def subnormal(x: Tensor) -> int:
    """The number of subnormal values in ``x``."""
    return int(((x != 0) & (x.abs() < TINY)).sum())


def trajectory_profile(optimizer, task, steps: int) -> dict[str, float]:
    """One problem's ``steps`` steps without meta-gradients: the milliseconds per step of the
    optimizer's step and of the task's gradient, and the share of subnormal values in what
    the task computes on the way (the MLP's parameters, hidden activations, class
    probabilities and gradient) and in the LSTM's update and states."""
    problems = task.sample(1, make_generator(0, "bench-eval"))
    params = task.init_params(problems)
    state = optimizer.init_state(params, task.segments)
    _, grad = task.loss_and_grad(params, problems, 0)
    with torch.no_grad():  # warm-up: a compiled step compiles at its first call
        advance(optimizer, params, grad, state)
    names = ("parameters", "hidden", "probabilities", "gradient", "update", "LSTM state")
    counts, totals = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    seconds = {"optimizer": 0.0, "task": 0.0}
    with torch.no_grad():
        for t in range(1, steps + 1):
            before = params
            start = time.perf_counter()
            params, state = advance(optimizer, params, grad, state)
            middle = time.perf_counter()
            _, grad = task.loss_and_grad(params, problems, t)
            seconds["optimizer"] += middle - start
            seconds["task"] += time.perf_counter() - middle
            x, labels = task.minibatch(problems, t)
            _, (_, _, hidden, log_p) = task._forward(params, x, labels)
            for name, value in (("parameters", params), ("hidden", hidden),
                                ("probabilities", log_p.exp()), ("gradient", grad),
                                ("update", params - before)):
                counts[name] += subnormal(value)
                totals[name] += value.numel()
            for value in (*state.h, *state.c):
                counts["LSTM state"] += subnormal(value)
                totals["LSTM state"] += value.numel()
    shares = {name: counts[name] / totals[name] for name in names}
    return {**shares, **{f"{k} ms": 1e3 * v / steps for k, v in seconds.items()}}


def profile(args, task) -> None:
    print("| epoch | phase | problem-steps/s | with subnormals flushed to zero |\n"
          "|---|---|---|---|", flush=True)
    inside = {}
    for epoch in args.epochs:
        optimizer = paper_optimizer("mnist", "lstm", seed=args.seed)
        optimizer.load_state_dict(torch.load(args.out / f"epoch-{epoch}.pt"))
        if args.compile:
            optimizer = optimizer.compiled()
        inside[epoch] = {}
        for flush in (False, True):
            torch.set_flush_denormal(flush)
            inside[epoch][flush] = trajectory_profile(optimizer, task, args.steps)
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
            print(f"| {epoch} | {phase} | {rates[0]:,.0f} | {rates[1]:,.0f} |", flush=True)
    print("\nOne evaluation trajectory: milliseconds per step (as is / subnormals flushed) and "
          "the share of subnormal values\n\n| epoch | optimizer ms | task ms | parameters | "
          "hidden | probabilities | gradient | update | LSTM state |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for epoch, runs in inside.items():
        plain, flushed = runs[False], runs[True]
        print(f"| {epoch} | {plain['optimizer ms']:.2f} / {flushed['optimizer ms']:.2f} | "
              f"{plain['task ms']:.2f} / {flushed['task ms']:.2f} | "
              + " | ".join(f"{plain[k]:.2%}" for k in ("parameters", "hidden", "probabilities",
                                                         "gradient", "update", "LSTM state"))
              + " |")


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
    parser.add_argument("--monitor", action="store_true",
                        help="train: validate the ReLU net after every epoch too")
    parser.add_argument("--compile", action="store_true",
                        help="the compiled step (what `phys-l2o reproduce` runs), not eager")
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
