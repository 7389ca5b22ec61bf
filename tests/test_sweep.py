"""Sweeps: files as data, cells written as they finish, resume after ``kill -9``, sharding on
torchrun (2 gloo processes), the thread policy."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from phys_l2o import parallel
from phys_l2o.presets import PAPER_BASELINES, PAPER_LEARNED
from phys_l2o.sweep import PACKAGE_SWEEPS, Sweep, SweepError, load_sweep, run_sweep

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "ablations").glob("*.toml")) + sorted(PACKAGE_SWEEPS.glob("*.toml"))

TINY = """name = "tiny"
title = "A tiny sweep"
reference = "hnn"
train = { type = "quadratic" }

[budgets.tiny]
epochs = 2
trajectories = 3
meta_batch = 1
validation_problems = 4
test_problems = 8
steps = 12
seeds = 2

[budgets.other]
epochs = 1
trajectories = 1
meta_batch = 1
validation_problems = 2
test_problems = 8
steps = 12
seeds = 2

[targets.quadratic]
task = { type = "quadratic" }
baselines.sgd = { type = "sgd", lr = 0.01 }
baselines.adam = { type = "adam", lr = 0.1 }

[[variants]]
name = "hnn"
optimizer = { type = "hnn", out_mul = 0.001 }
unroll = 5

[[variants]]
name = "no control"
optimizer.type = "hnn"
optimizer.out_mul = 0.001
optimizer.field.type = "port-hamiltonian"
optimizer.field.potential = "potential-gradient-mlp"
optimizer.field.control = false
unroll = 5
"""


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def finals(out: Path) -> dict[str, list]:
    """Every cell's per-problem final losses, by cell file."""
    return {str(p.relative_to(out / "cells")): json.loads(p.read_text())["targets"]
            for p in sorted((out / "cells").glob("*/*.json"))}


def finals_only(cells: dict) -> dict:
    """The losses of every cell (per-problem finals and mean curves), without timings."""
    return {k: {t: (v["final"], v["curve"]) for t, v in targets.items()}
            for k, targets in cells.items()}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_sweep_file_round_trips(path):
    sweep = load_sweep(path)
    again = Sweep.from_dict(tomllib.loads(sweep.to_toml()))
    assert again == sweep
    assert again.to_dict() == sweep.to_dict()
    assert len(sweep.cells([0, 1])) == 2 * len(sweep.variants) + len(sweep.baselines())


@pytest.mark.parametrize("path", sorted((ROOT / "ablations").glob("*.toml")),
                         ids=lambda p: p.name)
def test_ablations_start_from_the_paper_settings(path):
    sweep = load_sweep(path)
    task = sweep.train["type"]
    paper = {v.name: v for v in sweep.variants if v.name.startswith("hnn (paper)")}
    assert len(paper) == 1 and sweep.reference in paper
    (hnn,) = paper.values()
    preset = PAPER_LEARNED[task]["hnn"]
    assert hnn.optimizer == preset["optimizer"]
    assert hnn.settings == {"unroll": preset["unroll"], "meta_lr": preset["meta_lr"]}
    for target in sweep.targets:
        key = task if task == "quadratic" else (
            "mnist-relu" if target.task["activation"] == "relu" else "mnist-sigmoid")
        assert target.baselines == PAPER_BASELINES[key]


def test_a_sweep_writes_each_cell_and_resumes_from_them(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    report = run_sweep(tiny, out=out, device="cpu", progress=False)
    printed = capsys.readouterr().out
    assert "6 cells (2 variants x 2 seeds, 2 baselines); 0 finished cells reused" in printed
    cells = finals(out)
    assert sorted(cells) == ["adam/baseline.json", "hnn/seed-0.json", "hnn/seed-1.json",
                             "no-control/seed-0.json", "no-control/seed-1.json",
                             "sgd/baseline.json"]
    assert (out / "cells" / "hnn" / "seed-1.pt").is_file()
    assert not list(out.glob("cells/*/*.training.pt"))
    assert len((out / "sweep.log").read_text().splitlines()) == 6
    methods = report["targets"]["quadratic"]
    assert list(methods) == ["hnn", "no control", "sgd", "adam"]
    assert methods["hnn"]["seeds"] == 2 and methods["sgd"]["seeds"] == 1
    assert len(methods["hnn"]["final_loss"]["seed_means"]) == 2
    assert "paired_diff" in methods["sgd"] and "paired_diff" not in methods["hnn"]
    assert [r["seed"] for r in methods["hnn"]["meta_training"]] == [0, 1]
    assert json.loads((out / "results.json").read_text())["targets"] == \
        json.loads(json.dumps(report["targets"]))
    for name in ("results.md", "intervals.png", "curves-quadratic.png"):
        assert (out / name).stat().st_size > 500

    # the same command again: every cell is read back, nothing recomputed
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/*.json")}
    again = run_sweep(tiny, out=out, device="cpu", progress=False)
    assert "6 finished cells reused, 0 to run" in capsys.readouterr().out
    assert again["targets"] == report["targets"]
    assert {p: p.stat().st_mtime_ns for p in out.glob("cells/*/*.json")} == stamps

    # more seeds: only the new cells run
    more = run_sweep(tiny, out=out, device="cpu", progress=False, seeds=3)
    assert "6 finished cells reused, 2 to run" in capsys.readouterr().out
    assert more["targets"]["quadratic"]["hnn"]["seeds"] == 3

    # another budget on the same folder is refused; --overwrite starts again
    with pytest.raises(SweepError, match="budget 'tiny'.*Pass --overwrite"):
        run_sweep(tiny, "other", out=out, device="cpu", progress=False)
    run_sweep(tiny, "other", out=out, device="cpu", progress=False, overwrite=True)
    assert "0 finished cells reused" in capsys.readouterr().out
    assert len(finals(out)) == 6


def sweep_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("phys-l2o")), "sweep", *args, "--no-progress",
            "--device", "cpu"]


def test_a_killed_sweep_resumes_with_identical_results(tiny, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert subprocess.run(sweep_command(str(tiny), "--out", str(whole)), capture_output=True,
                          timeout=300).returncode == 0
    proc = subprocess.Popen(sweep_command(str(tiny), "--out", str(killed)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = killed / "sweep.log"
    deadline = time.monotonic() + 120
    while not (log.is_file() and log.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    finished = len(list(killed.glob("cells/*/*.json")))
    assert 1 <= finished < 6 and not (killed / "results.json").exists()

    resumed = subprocess.run(sweep_command(str(tiny), "--out", str(killed)),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{finished} finished cells reused, {6 - finished} to run" in resumed.stdout
    assert finals_only(finals(killed)) == finals_only(finals(whole))
    ours, theirs = (json.loads((d / "results.json").read_text())["targets"]
                    for d in (killed, whole))
    for methods in (ours, theirs):
        for entry in methods["quadratic"].values():
            entry.pop("seconds")
            for row in entry.get("meta_training", []):
                row.pop("seconds")
    assert ours == theirs


def test_two_gloo_processes_give_the_results_of_one(tiny, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run_sweep(tiny, out=one, device="cpu", progress=False)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ.get('PATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "--no-python", *sweep_command(
                               str(tiny), "--out", str(two))],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 2 processes" in proc.stdout
    report = json.loads((two / "results.json").read_text())
    assert report["processes"] == 2
    ranks = {json.loads(p.read_text())["rank"] for p in two.glob("cells/*/*.json")}
    assert ranks == {0, 1}
    assert finals_only(finals(two)) == finals_only(finals(one))


def test_the_thread_policy(monkeypatch, tiny, tmp_path):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
        assert parallel.policy_threads() == 1
        assert parallel.policy_threads(3) == 3
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            parallel.policy_threads(0)
        # cores divided by the processes of the machine, capped by the default
        monkeypatch.setattr(parallel, "available_cores", lambda: 8)
        monkeypatch.setattr(parallel, "DEFAULT_THREADS", 16)
        assert parallel.policy_threads() == 8
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
        assert parallel.policy_threads() == 2
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
        assert parallel.policy_threads() == 1
        assert parallel.configure_threads(2) == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
        torch.set_num_threads(3)
        report = run_sweep(tiny, "other", out=tmp_path / "t", device="cpu", threads=2,
                           progress=False)
        assert report["threads"] == 2
        assert torch.get_num_threads() == 3  # the caller's count is given back
        assert all(json.loads(p.read_text())["threads"] == 2
                   for p in (tmp_path / "t").glob("cells/*/*.json"))
    finally:
        torch.set_num_threads(before)


MAPPED_BLOCKS = """
import ctypes, sys, torch
from phys_l2o.parallel import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
before = libc.mallinfo2().hblks
block = torch.ones(16 * 2**20)  # 64 MiB
print(kept, libc.mallinfo2().hblks - before)
"""


def test_freed_memory_is_kept_for_reuse():
    # glibc maps large blocks apart and unmaps them at every free: a step's megabytes are
    # faulted in again at every step; the command's processes keep them (parallel.py)
    if not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("needs glibc 2.33 or later (mallinfo2)")
    outputs = [subprocess.run([sys.executable, "-c", MAPPED_BLOCKS, how], capture_output=True,
                              text=True, check=True).stdout.split() for how in ("default", "keep")]
    assert outputs == [["None", "1"], ["True", "0"]]


def test_the_command_runs_a_sweep_file(tiny, tmp_path):
    proc = subprocess.run(sweep_command(str(tiny), "--budget", "other", "--out",
                                        str(tmp_path / "c"), "--seeds", "1"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "# A tiny sweep" in proc.stdout and "| HNN | 19 |" in proc.stdout


def test_a_resumed_cell_counts_the_time_of_earlier_processes(tiny, tmp_path, monkeypatch):
    import phys_l2o.meta as meta

    real = meta.meta_train

    def resumed(*args, **kwargs):  # as if 1000 s of meta-training ran before this process
        result = real(*args, **kwargs)
        result.seconds += 1000.0
        return result

    monkeypatch.setattr(meta, "meta_train", resumed)
    started = time.perf_counter()
    run_sweep(tiny, out=tmp_path / "out", device="cpu", progress=False, seeds=1)
    took = time.perf_counter() - started
    for path in (tmp_path / "out" / "cells").glob("*/*.json"):
        record = json.loads(path.read_text())
        if record["kind"] == "learned":
            assert 1000.0 < record["seconds"] < 1000.0 + took
            assert record["meta_training"]["seconds"] > 1000.0
        else:
            assert record["seconds"] < took
