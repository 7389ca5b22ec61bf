"""Timing helpers shared by the benchmark scripts: problem-steps per second of meta-training
(rollout with truncated meta-updates) and of evaluation (frozen rollout).

One problem-step is one optimizee step of one problem.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from phys_l2o.meta import evaluate
from phys_l2o.meta.estimators import truncated_rollout
from phys_l2o.seeding import make_generator

#: an MNIST folder beside the project, used when no --data-root is given and it exists.
OFFLINE_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def mnist_root(data_root: str | None) -> str | Path | None:
    """``data_root``, else the offline folder beside the project if it holds MNIST/raw/, else
    ``None`` (the task then looks in PHYS_L2O_DATA or the user cache, downloading there)."""
    if data_root is None and (OFFLINE_DATA / "MNIST" / "raw").is_dir():
        return OFFLINE_DATA
    return data_root


def meta_train_rate(optimizer, task, batch: int, steps: int, unroll: int, repeats: int = 3,
                    device="cpu") -> float:
    """Median problem-steps/s of meta-training trajectories (backward + Adam every ``unroll``)."""
    meta_opt = torch.optim.Adam(optimizer.parameters(), lr=1e-3)

    def meta_step(loss):
        meta_opt.zero_grad(set_to_none=True)
        loss.backward()
        meta_opt.step()
        return True

    gen = make_generator(0, "bench-train")

    def once():
        problems = task.sample(batch, gen, device)
        truncated_rollout(optimizer, task, problems, steps, unroll, meta_step)

    return _rate(once, batch * steps, repeats, device)


def evaluate_rate(optimizer, task, batch: int, steps: int, repeats: int = 3,
                  device="cpu") -> float:
    """Median problem-steps/s of evaluation (no meta-gradients)."""
    problems = task.sample(batch, make_generator(0, "bench-eval"), device)
    return _rate(lambda: evaluate(optimizer, task, problems, steps), batch * steps, repeats,
                 device)


def _rate(fn, work: int, repeats: int, device) -> float:
    fn()  # warm-up
    rates = []
    for _ in range(repeats):
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        rates.append(work / (time.perf_counter() - start))
    return statistics.median(rates)


def print_table(rows: list[tuple[str, str, int, float, float | None]]) -> None:
    """Rows of (configuration, phase, batch, measured, reference) as a markdown table."""
    print("| configuration | phase | batch | problem-steps/s | reference | ratio |")
    print("|---|---|---|---|---|---|")
    for config, phase, batch, measured, reference in rows:
        ref = f"{reference:,.0f}" if reference else "-"
        ratio = f"{measured / reference:.1f}x" if reference else "-"
        print(f"| {config} | {phase} | {batch} | {measured:,.0f} | {ref} | {ratio} |")
