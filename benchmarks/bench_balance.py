"""How well an engine keeps its workers busy: a sweep's cell time (the sum of its cells' own
times) over its wall time, which is the number of workers when no worker ever idles.

    # the MNIST pieces ablation, one epoch per cell, one seed per variant, on 2 Ray workers
    python benchmarks/bench_balance.py ablations/pieces-mnist.toml --budget cpu \\
        --epochs 1 --seeds 1 --engine ray --workers 2
    # the same on the local engine's worker processes
    python benchmarks/bench_balance.py ablations/pieces-mnist.toml --budget cpu \\
        --epochs 1 --seeds 1 --engine local --workers 2

The cells' costs differ several-fold (the LSTM's against the HNNs', the baselines'), which is
what a static deal of cells to processes cannot balance. The run goes to a fresh temporary
folder (``--out`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import mnist_root

from phys_l2o.experiments.runner import run_sweep


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="a sweep file")
    parser.add_argument("--budget", default=None)
    parser.add_argument("--epochs", type=int, default=None, help="override the budget's epochs")
    parser.add_argument("--seeds", type=int, default=None, help="meta-seeds 0..N-1")
    parser.add_argument("--engine", choices=["local", "ray"], default="ray")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-group", dest="group", action="store_false")
    parser.add_argument("--data-root", default=None, help="folder holding MNIST/raw/")
    parser.add_argument("--out", type=Path, default=None, help="keep the run here")
    args = parser.parse_args(argv)

    out = args.out or Path(tempfile.mkdtemp(prefix="balance-")) / "run"
    began = time.perf_counter()
    report = run_sweep(args.sweep, args.budget, out=out, seeds=args.seeds, device="cpu",
                       data_root=mnist_root(args.data_root), progress=False,
                       overrides={"epochs": args.epochs}, workers=args.workers,
                       engine=args.engine, group=args.group)
    wall = time.perf_counter() - began
    cells = sorted(((json.loads(p.read_text())["seconds"], p.parent.name)
                    for p in out.glob("cells/*/*.json")), reverse=True)
    print(f"\n{args.sweep.name}, budget {report['budget']} (epochs {report['sizes']['epochs']}), "
          f"engine {args.engine}, {args.workers} workers of {report['threads']} thread(s)")
    print("longest cells: " + ", ".join(f"{name} {seconds:.0f} s" for seconds, name in cells[:4]))
    print(f"cell time {report['cell_seconds']:.0f} s, wall time {wall:.0f} s (the run's own "
          f"{report['seconds']:.0f} s): cell time / wall time = "
          f"{report['cell_seconds'] / wall:.2f} (at most {args.workers})")


if __name__ == "__main__":
    main()
