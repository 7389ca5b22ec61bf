"""Regenerate every ablation table and plot with one command.

    python ablations/run_all.py --budget smoke|paper --device cpu|cuda --out runs/ablations
                               [--data-root DIR] [--skip-mnist]

``smoke`` checks the machinery (3 seeds, tiny schedules; about 2.5 minutes on 2 CPU cores);
``paper``
meta-trains every variant with the paper's schedule (hours on a CPU; use a GPU). Writes one
``.md``/``.json``/``.png`` triple per ablation and an ``index.md`` linking them.
"""

from __future__ import annotations

import time

import integrators
import pieces
import transfer
from common import main_arguments, write_index


def main() -> None:
    args = main_arguments(__doc__)
    start = time.perf_counter()
    reports = []
    for module in (pieces, integrators, transfer):
        reports += module.run(**args)
    write_index(args["out"], reports, time.perf_counter() - start)
    print(f"wrote {len(reports)} ablations to {args['out']} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
