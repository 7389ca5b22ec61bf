"""The run folder: the one place that knows how a sweep's run is laid out on disk.

    OUT/sweep.json                    the manifest: what must match for a run to be resumed
    OUT/sweep.log                     one line per finished cell
    OUT/cells/<method>/seed-<k>.json  a learned cell's record (a baseline: baseline.json)
    OUT/cells/<method>/seed-<k>.pt    its checkpoint (the best weights)
    OUT/cells/<method>/seed-<k>.training.pt   its training state, while it meta-trains
    OUT/results.json, results.md, intervals.png, curves-<target>.png, transfer.png
    .OUT.lock                         beside OUT: held while a run writes it (``locked``)

``<method>`` is the method's name as a file name (``slug``). The runner writes the folder, the
claims and the pretrained packer read it; all through ``RunFolder``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..checks import check_output_dir
from ..reporting.results import write_json
from .spec import OPTIONAL_BUDGET_FIELDS, SweepError, slug

#: the format written into a run's ``sweep.json`` and every cell record.
FORMAT = "phys-l2o-sweep/1"
#: the files a run writes under ``cells/`` (``--overwrite`` removes these, nothing else).
CELL_FILES = ("*/seed-*.json", "*/seed-*.pt", "*/baseline.json", "*/.seed-*.tmp",
              "*/.baseline.json.*.tmp")
#: files of a run folder that belong to a run (anything else is left alone).
RUN_FILES = ("sweep.json", "sweep.log", "results.json", "results.md", "intervals.png",
             "curves-*.png", "transfer.png")


class RunFolder:
    """A sweep's output folder ``path``: its manifest, cells, checkpoints and reports."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ---------------------------------------------------------------------------------------
    # paths

    def cell_path(self, method: str, seed: int | None, suffix: str) -> Path:
        """A cell's file: ``cells/<method>/seed-<k><suffix>`` (a baseline: ``baseline``)."""
        stem = "baseline" if seed is None else f"seed-{seed}"
        return self.path / "cells" / slug(method) / f"{stem}{suffix}"

    def checkpoint(self, method: str, seed: int) -> Path:
        """A learned cell's checkpoint (its best weights)."""
        return self.cell_path(method, seed, ".pt")

    def training_state(self, method: str, seed: int) -> Path:
        """A learned cell's training state while it meta-trains (removed when it ends)."""
        return self.cell_path(method, seed, ".training.pt")

    @property
    def manifest_path(self) -> Path:
        return self.path / "sweep.json"

    @property
    def results_path(self) -> Path:
        return self.path / "results.json"

    def report_path(self, name: str) -> Path:
        """A report file of the run (``results.md``, ``curves-<target>.png``, ...)."""
        return self.path / name

    def earlier_files(self) -> list[Path]:
        """The files of an earlier run in the folder."""
        if not self.path.is_dir():
            return []
        files = [p for pattern in RUN_FILES for p in self.path.glob(pattern)]
        if (self.path / "cells").is_dir():
            files.append(self.path / "cells")
        return sorted(files)

    # ---------------------------------------------------------------------------------------
    # the manifest

    def check(self, manifest: dict[str, Any], overwrite: bool = False) -> str:
        """What to do with the folder for a run of ``manifest``: ``"new"``, ``"resume"`` (the
        same manifest), ``"update"`` (the same sweep, budget and protocol, its file changed:
        a title, a variant, a target, an optional budget field; each finished cell is reused
        if what it depends on is unchanged, ``Plan.depends``), or ``"overwrite"``. Reads
        only.

        Raises:
            SweepError: the folder holds another run, or files of an unknown run, and
                ``overwrite`` was not given.
            ValueError: the path is not a writable folder.
        """
        check_output_dir(self.path)
        earlier = self.earlier_files()
        if not earlier:
            return "new"
        if overwrite:
            return "overwrite"
        try:
            theirs = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            raise SweepError(f"{self.path} holds results of another run ({earlier[0].name}) "
                              "but no readable sweep.json; pass --overwrite to start again "
                              "there, or choose another --out") from None
        mine = json.loads(json.dumps(manifest))
        if isinstance(theirs, dict):
            theirs.setdefault("protocol", "corrected")  # written before protocols existed
        if theirs == mine:
            return "resume"
        if isinstance(theirs, dict) and isinstance(theirs.get("sweep"), dict) and \
                theirs["sweep"].get("name") == mine["sweep"]["name"] and \
                all(theirs.get(key) == mine[key] for key in ("budget", "protocol")) and \
                required_sizes(theirs.get("sizes")) == required_sizes(mine["sizes"]):
            return "update"
        what = ("another sweep" if (theirs.get("sweep") or {}).get("name") !=
                mine["sweep"]["name"] else
                f"the {theirs.get('protocol')!r} protocol"
                if theirs.get("protocol") != mine["protocol"] else
                f"budget {theirs.get('budget')!r} (sizes {theirs.get('sizes')})")
        raise SweepError(f"{self.path} holds a run of {what}; this run is sweep "
                          f"{mine['sweep']['name']!r} with budget {mine['budget']!r} (sizes "
                          f"{mine['sizes']}), protocol {mine['protocol']!r}. Pass --overwrite "
                          "to start again there, or choose another --out")

    @property
    def lock_path(self) -> Path:
        """The advisory lock of the folder: ``.<name>.lock`` beside it (it outlives the run,
        empty; the folder itself may not exist before the run)."""
        path = self.path.resolve()
        return path.parent / f".{path.name}.lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock while a run writes it (local rank 0 of each machine; the
        other ranks and the worker processes of the run share it).

        Raises:
            SweepError: another process holds it (the message names the folder).
        """
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock_path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise SweepError(f"another phys-l2o process is running into {self.path} (it holds "
                             f"{self.lock_path}); wait for it to end, or choose another "
                             "--out") from None
        try:
            yield
        finally:
            lock.release()

    def prepare(self, manifest: dict[str, Any], mode: str) -> None:
        """Make the folder ready (local rank 0 of each machine): remove an earlier run's
        files for ``overwrite``, write the manifest unless resuming."""
        if mode == "overwrite":  # (machines that share a folder may both remove it)
            for path in self.earlier_files():
                if path.is_dir():
                    self._remove_cells()
                else:
                    path.unlink(missing_ok=True)
        self.path.mkdir(parents=True, exist_ok=True)
        if mode != "resume":
            write_json(self.manifest_path, manifest)

    def _remove_cells(self) -> None:
        """Remove the cell files a run wrote (``cells/<method>/seed-<k>.*``,
        ``baseline.json``), then the folders they leave empty; anything else stays."""
        cells = self.path / "cells"
        for pattern in CELL_FILES:
            for path in cells.glob(pattern):
                path.unlink(missing_ok=True)
        for folder in sorted((p for p in cells.rglob("*") if p.is_dir()), reverse=True):
            with contextlib.suppress(OSError):  # not empty: it holds files of its own
                folder.rmdir()
        with contextlib.suppress(OSError):
            cells.rmdir()

    def read_manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_path.read_text())

    # ---------------------------------------------------------------------------------------
    # cells

    def read_cell(self, method: str, seed: int | None) -> dict | None:
        """A finished cell's record, or ``None`` if it has none (or a damaged one, which is
        then recomputed)."""
        return self._read(self.cell_path(method, seed, ".json"))

    def write_cell(self, method: str, seed: int | None, record: dict) -> None:
        """Write a cell's record, atomically."""
        path = self.cell_path(method, seed, ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, record)

    def records(self) -> list[dict]:
        """Every cell record of the folder (finished cells), in file order.

        Raises:
            FileNotFoundError: the folder holds no cell record.
        """
        paths = sorted((self.path / "cells").glob("*/*.json"))
        records = [r for p in paths if (r := self._read(p)) is not None]
        if not records:
            raise FileNotFoundError(f"no cell records in {self.path / 'cells'}: run `phys-l2o "
                                    "reproduce` (or `phys-l2o sweep`) into that folder first")
        return records

    def learned_records(self, method: str | None = None) -> list[dict]:
        """The records of the finished learned cells (those with their checkpoint), of every
        method or of ``method``, in file order.

        Raises:
            FileNotFoundError: the folder holds no cell record.
        """
        return [r for r in self.records() if r.get("kind") == "learned"
                and (method is None or r.get("method") == method)
                and self.checkpoint(r["method"], r["seed"]).is_file()]

    @staticmethod
    def _read(path: Path) -> dict | None:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("format") == FORMAT else None

    def log(self, text: str) -> None:
        """Append a time-stamped line to ``sweep.log``."""
        with open(self.path / "sweep.log", "a") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")

    def read_results(self) -> dict[str, Any]:
        """The run's ``results.json``.

        Raises:
            FileNotFoundError: the run has not written its reports (yet).
        """
        if not self.results_path.is_file():
            raise FileNotFoundError(f"no results.json in {self.path}: run `phys-l2o reproduce` "
                                    "(or `phys-l2o sweep`) into that folder to its end first")
        return json.loads(self.results_path.read_text())


def required_sizes(sizes: Any) -> Any:
    """A budget's sizes less its optional fields (``spec.OPTIONAL_BUDGET_FIELDS``): adding one
    (the tuned baselines' ``tuning_problems``) changes only the cells that use it, which
    ``Plan.depends`` finds, not the run as a whole."""
    if not isinstance(sizes, dict):
        return sizes
    return {k: v for k, v in sizes.items() if k not in OPTIONAL_BUDGET_FIELDS}
