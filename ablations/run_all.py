"""Run every ablation sweep file of this folder and write an index of their reports.

    python ablations/run_all.py [--budget NAME] [--device auto|cpu|cuda] [--out runs/ablations]
                               [--data-root DIR] [--skip-mnist] [--seeds N] [--threads N]
                               [--workers N]

Each ablation is a sweep file (``*.toml`` here) that ``phys-l2o sweep FILE`` runs on its own;
this script runs them one after another into ``OUT/<name>/`` (each resumable: run it again to
continue) and writes ``OUT/index.md``. ``--budget`` names a budget every file has (``paper``,
``smoke``, ``test``); by default each file runs its own default budget.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from phys_l2o.experiments.runner import run_sweep
from phys_l2o.experiments.spec import load_sweep

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--budget", default=None, help="a budget of every sweep file")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/ablations"))
    parser.add_argument("--data-root", default=None,
                        help="MNIST data root (default: $PHYS_L2O_DATA, else the user cache)")
    parser.add_argument("--skip-mnist", action="store_true", help="quadratic ablations only")
    parser.add_argument("--seeds", type=int, default=None, help="meta-seeds (default: the "
                        "budget's)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes per sweep (default: as `phys-l2o sweep`)")
    args = parser.parse_args()
    start = time.perf_counter()
    sweeps = [load_sweep(p) for p in sorted(HERE.glob("*.toml"))]
    if args.skip_mnist:
        sweeps = [s for s in sweeps if s.train["type"] != "mnist"]
    lines = ["# Ablations", ""]
    for sweep in sweeps:
        report = run_sweep(sweep, args.budget, out=args.out / sweep.name, seeds=args.seeds,
                           device=args.device, threads=args.threads, data_root=args.data_root,
                           workers=args.workers, progress=sys.stderr.isatty())
        lines += [f"- [{sweep.title}]({sweep.name}/results.md): budget `{report['budget']}`, "
                  f"seeds {report['seeds']}, {report['seconds']:.0f} s"]
    (args.out / "index.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(sweeps)} ablations to {args.out} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
