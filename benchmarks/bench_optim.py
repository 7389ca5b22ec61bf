"""The ``torch.optim`` drop-in at model scale: step time and peak memory of ``LearnedOptim``
against ``torch.optim.Adam`` and ``torch.optim.SGD`` on MLPs of 0.1, 1 and 10 million parameters.

    python benchmarks/bench_optim.py                                      # 0.1, 1, 10 M
    python benchmarks/bench_optim.py --sizes 0.1 1 --optimizers adam hnn-general
    python benchmarks/bench_optim.py --threads 2 --out results/bench-optim
    python benchmarks/bench_optim.py --smoke --out /tmp/bench-optim       # 0.01, 0.05 M

The model is an MLP ``512 -> h -> h -> 10`` (Linear + ReLU) with ``h`` chosen to come closest
to the requested parameter count, on random inputs (batch 64) with a cross-entropy loss; the
gradients come from a real backward. Only ``opt.step()`` is timed: the figure is the median
over ``--steps`` steps after ``--warmup`` steps, and the very first step (which absorbs any
compilation and lazy set-up) is reported on its own. ``sgd`` is SGD with lr 0.01 and momentum
0.9, ``adam`` is Adam with lr 1e-3, and any other name is a pretrained learned optimizer
(``phys_l2o.optim.pretrained_names()``) at its trained step scale.

Each (optimizer, size) runs in a fresh process, so that its memory figures are its own:
*state MB* is the size of the tensors in ``opt.state``; *extra peak MB* is the process's peak
resident memory minus its resident memory once the model, its gradients and one warm-up
forward/backward exist, just before the optimizer is built (the pretrained network is loaded,
and a throwaway optimizer of the same kind has taken one step on a one-element parameter, so
that lazy imports such as ``torch._dynamo``'s ~150 MB are not counted). A measurement that
fails or runs past ``--timeout`` is reported in its row. With ``--out DIR`` the tables, all raw
figures and a plot are written to ``DIR/bench_optim.md``, ``DIR/bench_optim.json`` and
``DIR/bench_optim.png``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from phys_l2o.optim import LearnedOptim, load_pretrained, pretrained_names
from phys_l2o.optimizers.base import LearnedOptimizer

#: the MLP's input width, classes and batch.
INPUTS, CLASSES, BATCH = 512, 10, 64
#: the optimizers measured by default.
DEFAULT_OPTIMIZERS = ["sgd", "adam", "hnn-general", "hnn-mnist", "lstm-mnist"]
#: the baselines from ``torch.optim`` (any other name is a pretrained learned optimizer).
BASELINES = ("sgd", "adam")


def mlp_width(params: float) -> int:
    """The hidden width ``h`` whose MLP ``INPUTS -> h -> h -> CLASSES`` has the parameter
    count closest to ``params``."""
    # h^2 + (INPUTS + CLASSES + 2) h + CLASSES = params
    b = INPUTS + CLASSES + 2
    root = (-b + math.sqrt(b * b + 4 * max(params - CLASSES, 0))) / 2
    candidates = {max(1, math.floor(root)), max(1, math.ceil(root))}
    return min(candidates, key=lambda h: (abs(mlp_params(h) - params), h))


def mlp_params(width: int) -> int:
    """The parameter count of the MLP of hidden width ``width``."""
    return (INPUTS + 1) * width + (width + 1) * width + (width + 1) * CLASSES


def build_mlp(width: int) -> nn.Sequential:
    """The MLP ``INPUTS -> width -> width -> CLASSES`` with ReLU between the Linear layers."""
    return nn.Sequential(nn.Linear(INPUTS, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, CLASSES))


def current_rss_kib() -> float | None:
    """The process's resident memory now in KiB, or ``None`` where it cannot be read."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 1024
    except ImportError:
        pass
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1024
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_kib() -> float:
    """The process's peak resident memory so far in KiB (``ru_maxrss``; bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform == "darwin" else float(peak)


def state_bytes(value: Any, seen: set[int] | None = None) -> int:
    """Bytes of the tensors in ``value`` (an optimizer's ``state``), through dicts, lists and
    tuples; a tensor met twice counts once."""
    seen = set() if seen is None else seen
    if isinstance(value, torch.Tensor):
        if id(value) in seen:
            return 0
        seen.add(id(value))
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(state_bytes(v, seen) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(state_bytes(v, seen) for v in value)
    return 0


def make_optimizer(name: str, params: Iterable[Tensor],
                   network: LearnedOptimizer | None = None) -> torch.optim.Optimizer:
    """``sgd`` (lr 0.01, momentum 0.9), ``adam`` (lr 1e-3) or the learned ``network`` (the
    pretrained optimizer ``name``) at its trained step scale."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3)
    return LearnedOptim(params, network if network is not None else name)


def measure(name: str, size: float, steps: int, warmup: int, threads: int) -> dict[str, Any]:
    """One measurement, meant for a fresh process: step times and memory of optimizer ``name``
    on the MLP of about ``size`` million parameters."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    width = mlp_width(size * 1e6)
    model = build_mlp(width)
    inputs, targets = torch.randn(BATCH, INPUTS), torch.randint(0, CLASSES, (BATCH,))
    loss_fn = nn.CrossEntropyLoss()
    network = None if name in BASELINES else load_pretrained(name)
    loss_fn(model(inputs), targets).backward()
    # the first optimizer built imports torch._dynamo (~150 MB), and a learned step may set
    # itself up lazily: a throwaway one on one parameter keeps both out of the figures
    spare = torch.zeros(1, requires_grad=True)
    spare.grad = torch.ones(1)
    make_optimizer(name, [spare], network).step()
    del spare
    base_rss = current_rss_kib()
    peak_before = peak_rss_kib()

    opt = make_optimizer(name, model.parameters(), network)
    times = []
    for _ in range(warmup + steps):
        opt.zero_grad()
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        start = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - start)
    peak = peak_rss_kib()
    timed = times[warmup:] or times
    return {
        "optimizer": name, "size_m": size, "width": width,
        "params": sum(p.numel() for p in model.parameters()),
        "step_ms": 1e3 * statistics.median(timed), "first_step_ms": 1e3 * times[0],
        "step_ms_all": [1e3 * t for t in times], "final_loss": float(loss),
        "state_bytes": state_bytes(opt.state),
        "base_rss_kib": base_rss, "peak_rss_before_kib": peak_before, "peak_rss_kib": peak,
        "extra_peak_kib": None if base_rss is None else peak - base_rss,
    }


def run_one(name: str, size: float, args: argparse.Namespace) -> dict[str, Any]:
    """``measure`` in a fresh process of this script; a failure or timeout gives a row with
    an ``error``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--one", name, str(size),
               "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--threads", str(args.threads)]
    row: dict[str, Any] = {"optimizer": name, "size_m": size, "width": mlp_width(size * 1e6),
                           "params": mlp_params(mlp_width(size * 1e6))}
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout,
                              env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    except subprocess.TimeoutExpired:
        return {**row, "error": f"timed out after {args.timeout:g} s"}
    row["wall_s"] = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode == 0 and lines:
        return {**row, **json.loads(lines[-1])}
    if lines and "error" in json.loads(lines[-1]):
        return {**row, "error": json.loads(lines[-1])["error"]}
    if proc.returncode < 0:
        signal = -proc.returncode
        why = " (out of memory?)" if signal == 9 else ""
        return {**row, "error": f"killed by signal {signal}{why}"}
    tail = proc.stderr.strip().splitlines()
    return {**row, "error": f"exit {proc.returncode}: {tail[-1] if tail else 'no output'}"}


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of one size's rows (with its heading)."""
    first = rows[0]
    lines = [f"### {first['size_m']:g} M parameters: MLP {INPUTS}-{first['width']}-"
             f"{first['width']}-{CLASSES}, {first['params']:,} parameters", "",
             "| optimizer | step ms (median) | vs Adam | first step ms (incl. compile) "
             "| state MB | extra peak MB |", "|---|---|---|---|---|---|"]
    adam = next((r for r in rows if r["optimizer"] == "adam" and "error" not in r), None)
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['optimizer']} | failed: {r['error']} | - | - | - | - |")
            continue
        ratio = f"{r['step_ms'] / adam['step_ms']:.2f}x" if adam else "-"
        extra = "n/a" if r["extra_peak_kib"] is None else f"{r['extra_peak_kib'] / 1024:.1f}"
        lines.append(f"| {r['optimizer']} | {r['step_ms']:.3f} | {ratio} | "
                     f"{r['first_step_ms']:.1f} | {r['state_bytes'] / 2**20:.2f} | {extra} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Step time and extra peak memory against the parameter count, one line per optimizer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name in dict.fromkeys(r["optimizer"] for r in rows):
        good = [r for r in rows if r["optimizer"] == name and "error" not in r]
        left.plot([r["params"] for r in good], [r["step_ms"] for r in good], "-o", label=name)
        memory = [r for r in good if r["extra_peak_kib"] is not None and r["extra_peak_kib"] > 0]
        right.plot([r["params"] for r in memory], [r["extra_peak_kib"] / 1024 for r in memory],
                   "-o", label=name)
    for ax, label in ((left, "opt.step() ms (median)"), (right, "extra peak memory (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Runs the benchmark (or, with the hidden ``--one``, a single measurement)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", nargs="+", default=DEFAULT_OPTIMIZERS,
                        choices=[*BASELINES, *pretrained_names()])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.1, 1.0, 10.0],
                        help="parameter counts, in millions")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--timeout", type=float, default=600,
                        help="stop a measurement after this many seconds")
    parser.add_argument("--out", type=Path, default=None,
                        help="write bench_optim.md, .json and .png here")
    parser.add_argument("--smoke", action="store_true",
                        help="a quick check: sizes 0.01 and 0.05 M, 3 steps, 1 warm-up")
    parser.add_argument("--one", nargs=2, metavar=("OPT", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one:
        try:
            row = measure(args.one[0], float(args.one[1]), args.steps, args.warmup, args.threads)
        except Exception as error:  # reported in the row; the parent carries on
            print(json.dumps({"error": f"{type(error).__name__}: {error}"[:300]}), flush=True)
            raise SystemExit(1) from error
        print(json.dumps(row), flush=True)
        return

    if args.smoke:
        args.sizes, args.steps, args.warmup = [0.01, 0.05], 3, 1
    date = datetime.date.today().isoformat()
    header = (f"bench_optim: torch {torch.__version__}, {args.threads} thread(s) of "
              f"{os.cpu_count()} CPUs, {date}; opt.step() only, median of {args.steps} steps "
              f"after {args.warmup} warm-up steps")
    print(header + "\n", flush=True)
    rows, sections = [], [header]
    for size in args.sizes:
        mine = [run_one(name, size, args) for name in args.optimizers]
        rows += mine
        sections.append(table(mine))
        print(sections[-1] + "\n", flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_optim.md").write_text("\n\n".join(sections) + "\n")
        command = shlex.join([Path(sys.executable).name, *sys.argv])
        (args.out / "bench_optim.json").write_text(json.dumps({
            "torch": torch.__version__, "threads": args.threads, "cpu_count": os.cpu_count(),
            "date": date, "command": command, "steps": args.steps, "warmup": args.warmup,
            "timeout_s": args.timeout, "batch": BATCH, "rows": rows}, indent=2) + "\n")
        plot(rows, args.out / "bench_optim.png",
             f"torch {torch.__version__}, {args.threads} thread(s), batch {BATCH}")
        print(f"wrote {args.out}/bench_optim.{{md,json,png}}")


if __name__ == "__main__":
    main()
