"""Whole-process times under the thread policy: idle against one busy core, the policy's one
thread against torch's default of one thread per core, and a sweep on 1 against 2 processes.

    python benchmarks/bench_threads.py --data-root DIR            # both parts, 3 runs each
    python benchmarks/bench_threads.py --only threads --repeats 5

*threads*: ``phys-l2o reproduce mnist --budget smoke`` (the MNIST smoke reproduction) with the
policy's threads and with ``--threads <cores>`` (torch's default), each on an idle machine and
while another process keeps one core busy (a Python busy loop). *processes*: ``phys-l2o sweep
ablations/pieces-quadratic.toml --budget smoke`` in one process and on ``torchrun
--nproc-per-node 2``. Each figure is the median wall time of whole ``phys-l2o`` processes
(start-up included) over ``--repeats`` runs, each into a fresh output folder; a run stopped
at ``--timeout`` counts as ``inf``; torch's default threads with a busy core run once. Run it
on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from phys_l2o.parallel import available_cores

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def timed(command: list[str], repeats: int, busy: bool, timeout: float) -> float:
    """Median seconds of ``command`` (``{out}`` replaced by a fresh folder each run); ``inf``
    for a run stopped at ``timeout`` seconds."""
    times = []
    for _ in range(repeats):
        out = Path(tempfile.mkdtemp(prefix="bench-threads-"))
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            time.sleep(0.5 if busy else 0.0)
            start = time.perf_counter()
            try:
                proc = subprocess.run([c.replace("{out}", str(out / "run")) for c in command],
                                      capture_output=True, text=True, timeout=timeout,
                                      env={**os.environ, "PATH": f"{BIN}{os.pathsep}"
                                                                 f"{os.environ.get('PATH', '')}"})
            except subprocess.TimeoutExpired:
                times.append(float("inf"))
                continue
            seconds = time.perf_counter() - start
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
            shutil.rmtree(out, ignore_errors=True)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
        times.append(seconds)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default=None, help="MNIST data root")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("threads", "processes"), default=None)
    parser.add_argument("--timeout", type=float, default=600,
                        help="stop a run after this many seconds (reported as inf)")
    args = parser.parse_args()
    cores = available_cores()
    print(f"{cores} cores; median of {args.repeats} whole-process runs")
    if args.only in (None, "threads"):
        mnist = [str(BIN / "phys-l2o"), "reproduce", "mnist", "--budget", "smoke", "--out",
                 "{out}", "--no-progress", "--device", "cpu"]
        if args.data_root:
            mnist += ["--data-root", args.data_root]
        print("\nMNIST smoke reproduction\n")
        print("| threads per process | idle (s) | one core busy (s) | busy / idle |")
        print("|---|---|---|---|")
        for label, extra in (("1 (the policy)", []),
                             (f"{cores} (torch's default)", ["--threads", str(cores)])):
            idle = timed(mnist + extra, args.repeats, busy=False, timeout=args.timeout)
            # torch's default on a busy core is slow enough that one run tells
            busy = timed(mnist + extra, args.repeats if not extra else 1, busy=True,
                         timeout=args.timeout)
            print(f"| {label} | {idle:.1f} | {busy:.1f} | {busy / idle:.2f} |", flush=True)
    if args.only in (None, "processes"):
        sweep = ["sweep", str(ROOT / "ablations" / "pieces-quadratic.toml"), "--budget",
                 "smoke", "--out", "{out}", "--no-progress", "--device", "cpu"]
        one = timed([str(BIN / "phys-l2o"), *sweep], args.repeats, busy=False,
                    timeout=args.timeout)
        two = timed([sys.executable, "-m", "torch.distributed.run", "--standalone",
                     "--nproc-per-node", "2", "--no-python", "phys-l2o", *sweep],
                    args.repeats, busy=False, timeout=args.timeout)
        print("\nsweep pieces-quadratic, smoke budget\n")
        print("| processes | wall time (s) |\n|---|---|")
        print(f"| 1 | {one:.1f} |\n| 2 (torchrun) | {two:.1f} |")


if __name__ == "__main__":
    main()
