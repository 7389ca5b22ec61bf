"""The ``phys-l2o`` command: parse and validate, then call the library.

    phys-l2o reproduce quadratic --budget smoke --out runs/quad
    phys-l2o sweep ablations/pieces-quadratic.toml --budget smoke --out runs/pieces
    phys-l2o train --optimizer hnn --task quadratic --out runs/hnn.pt
    phys-l2o train --config my_optimizer.toml --budget smoke --out runs/mine.pt
    phys-l2o evaluate --checkpoint runs/hnn.pt --task quadratic --out runs/eval
    phys-l2o evaluate --optimizer adam --lr 0.1 --task quadratic
    phys-l2o claims corrected=runs/quadratic,runs/mnist --out claims.md
    phys-l2o pack --commit REV runs/quadratic runs/mnist
"""

from __future__ import annotations

import re
import signal
import sys

# light imports only: `phys-l2o --help` answers without loading torch; the commands import
# the library when they run
from .parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv in ([], ["-h"], ["--help"]):
        build_parser(full=False).parse_args(argv)  # prints the help (or the usage) and exits
    args = build_parser().parse_args(argv)
    from ..parallel import RankTimeout, keep_freed_memory, thread_policy

    terminated: list[int] = []
    if from_command_line:  # a process of its own (parallel.py, "Memory")
        keep_freed_memory()
        preempt_on_sigterm(terminated)
    try:
        with thread_policy(getattr(args, "threads", None)):
            from .commands import RUN

            code = RUN[args.command](args, argv)
            return 143 if terminated and code == 130 else code
    except (ValueError, FileNotFoundError) as error:  # CheckpointError, SpecError: ValueErrors
        print(f"phys-l2o: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the command's own reading and writing
        where = f" ({error.filename})" if error.filename else ""
        print(f"phys-l2o: error: {error.strerror or error}{where}. {INTACT}", file=sys.stderr)
        return 2
    except RecursionError:
        print("phys-l2o: error: an input is nested too deeply to be read (a spec or a config "
              "table within itself hundreds of times); a spec needs a few levels",
              file=sys.stderr)
        return 2
    except RankTimeout as error:  # a rank of a torchrun launch that does not answer
        print(f"phys-l2o: error: {error}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as error:
        text = str(error)
        if not isinstance(error, MemoryError) and "can't allocate memory" not in text \
                and "out of memory" not in text.lower():
            raise
        tried = re.search(r"tried to allocate (\d+) bytes", text)
        size = f" (it asked for {int(tried[1]) / 1e9:.1f} GB)" if tried else ""
        print(f"phys-l2o: error: out of memory{size}: use fewer problems (--problems, "
              f"--meta-batch, --validation-problems), a smaller model or a machine with more "
              f"memory. {INTACT}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phys-l2o: interrupted", file=sys.stderr)
        return 143 if terminated else 130


#: what a failed command says of its files (every file is written whole or not at all).
INTACT = ("The files written before are intact (each is written whole or not at all); once "
          "fixed, the same command continues where it stopped (`train` with --resume)")


def preempt_on_sigterm(terminated: list[int]) -> None:
    """Treat SIGTERM (what Slurm, Kubernetes and torchrun send before a kill) as Ctrl-C: the
    run saves its training state and says how to continue; the command then exits 143
    (128 + SIGTERM), and ``terminated`` records the signal."""
    def stop(signum: int, frame: object) -> None:
        terminated.append(signum)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
