"""Long runs survive faults and bad input: checks before work, no silent overwrite, exact
resume after ``kill -9``, Ctrl-C, and runs that never trained."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from phys_l2o.cli import main

FAST = ["--budget", "smoke", "--no-progress", "--device", "cpu"]


def cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Ctrl-C as in a terminal, even where the tests run in a background job (which ignores it)
    return subprocess.Popen([sys.executable, "-m", "phys_l2o.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                            **kwargs)


@pytest.mark.parametrize("out, message", [
    (".", "is a folder"),
    ("a-file/hnn.pt", "is a file, not a folder"),
])
def test_train_checks_its_output_before_any_work(tmp_path, capsys, out, message):
    (tmp_path / "a-file").write_text("keep me")
    start = time.perf_counter()
    assert main(["train", "--out", str(tmp_path / out), *FAST]) == 2
    assert message in capsys.readouterr().err
    assert time.perf_counter() - start < 5          # refused before meta-training
    assert (tmp_path / "a-file").read_text() == "keep me"


def test_train_refuses_to_overwrite_without_being_told(tmp_path, capsys):
    out = tmp_path / "hnn.pt"
    args = ["train", "--out", str(out), "--epochs", "1", "--allow-untrained", *FAST]
    assert main(args) == 0
    before = out.read_bytes()
    assert main(args) == 2
    assert "--overwrite to start again or --resume" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main([*args, "--overwrite", "--seed", "1"]) == 0
    assert out.read_bytes() != before
    assert main([*args, "--resume"]) == 2          # the run ended: nothing to resume
    assert "no training state" in capsys.readouterr().err


def test_a_run_that_never_trained_is_not_a_success(tmp_path, capsys):
    out = tmp_path / "lstm.pt"
    assert main(["train", "--optimizer", "lstm", "--meta-lr", "10", "--out", str(out),
                 *FAST]) == 1
    err = capsys.readouterr().err
    assert "never improved on the untrained weights" in err and "diverged" in err
    assert not out.exists() and not (tmp_path / "lstm.training.pt").exists()
    # nothing blocks the same command, or a corrected one
    assert main(["train", "--optimizer", "lstm", "--meta-lr", "10", "--out", str(out),
                 "--allow-untrained", *FAST]) == 0
    assert out.is_file()


def wait_for_epoch(state: Path, epoch: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if state.is_file():
            try:
                if torch.load(state, weights_only=True)["epoch"] >= epoch:
                    return
            except Exception:  # noqa: BLE001 - being replaced
                pass
        time.sleep(0.05)
    raise AssertionError("the run did not reach the epoch in time")


RUN = ["train", "--optimizer", "hnn", "--epochs", "25", "--trajectories", "4",
       "--validation-problems", "8", "--allow-untrained", *FAST]


def test_killed_and_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    straight = tmp_path / "straight.pt"
    proc = cli(*RUN, "--out", str(straight))
    assert proc.wait(timeout=300) == 0, proc.communicate()

    out = tmp_path / "killed.pt"
    state = tmp_path / "killed.training.pt"
    proc = cli(*RUN, "--out", str(out))
    wait_for_epoch(state, 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists() and state.is_file()
    epoch = torch.load(state, weights_only=True)["epoch"]
    assert epoch < 25
    resumed = cli(*RUN, "--out", str(out), "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    assert not state.exists()
    a = torch.load(straight, weights_only=True)
    b = torch.load(out, weights_only=True)
    assert a["metadata"]["best_epoch"] == b["metadata"]["best_epoch"]
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key


@pytest.mark.parametrize("stop, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_preemption_saves_and_says_how_to_resume(tmp_path, stop, code):
    """SIGTERM is what Slurm, Kubernetes and torchrun send before a kill: as Ctrl-C, the run
    saves its state and says how to continue, and exits 143 (128 + SIGTERM)."""
    out = tmp_path / "hnn.pt"
    proc = cli(*RUN, "--out", str(out))
    wait_for_epoch(tmp_path / "hnn.training.pt", 2, proc)
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert "Traceback" not in err and err.count("\n") == 1
    assert "--resume" in err and "training state after epoch" in err
    resumed = cli(*RUN, "--out", str(out), "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    assert out.is_file()


def test_reproduce_reuses_its_own_run_and_starts_again_cleanly(tmp_path, capsys):
    out = tmp_path / "quad"
    args = ["reproduce", "quadratic", "--out", str(out), *FAST, "--workers", "1"]
    assert main(args) == 0
    before = json.loads((out / "results.json").read_text())
    capsys.readouterr()
    assert main(args) == 0                              # the same run: every cell reused
    assert "10 finished cells reused, 0 to run" in capsys.readouterr().out  # 4 tuned
    again = json.loads((out / "results.json").read_text())
    assert again["targets"] == before["targets"] and again["reused_cells"] == 10
    assert not list((out / "cells").glob("*/*.training.pt"))   # a finished run
    assert main([*args[:4], "--budget", "paper", "--no-progress"]) == 2  # another budget
    assert "Pass --overwrite to start again" in capsys.readouterr().err
    (out / "curves-old.png").write_bytes(b"an earlier run's plot")
    (out / "notes.txt").write_text("the user's own file")
    assert main([*args, "--overwrite", "--seed", "1"]) == 0
    assert not (out / "curves-old.png").exists()                    # no file of two runs
    assert (out / "notes.txt").exists()                             # not a run's file
    assert json.loads((out / "results.json").read_text())["seeds"] == [1]

    ev = tmp_path / "eval"
    ev_args = ["evaluate", "--optimizer", "adam", "--problems", "3", "--steps", "5",
               "--out", str(ev), "--no-progress", "--device", "cpu"]
    assert main(ev_args) == 0
    assert main(ev_args) == 2
    assert "--overwrite to start again" in capsys.readouterr().err
    assert main([*ev_args, "--overwrite"]) == 0
    (tmp_path / "file").write_text("x")
    assert main([*ev_args[:-5], "--out", str(tmp_path / "file" / "ev")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_reproduce_resumes_an_interrupted_run(tmp_path):
    out = tmp_path / "quad"
    args = ["reproduce", "quadratic", "--out", str(out), *FAST]
    proc = cli(*args)
    wait_for_epoch(out / "cells" / "hnn" / "seed-0.training.pt", 1, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "continue with: phys-l2o reproduce" in err
    assert "Traceback" not in err
    resumed = cli(*args)
    assert resumed.wait(timeout=300) == 0, resumed.communicate()
    assert (out / "results.json").is_file()
    assert not list((out / "cells").glob("*/*.training.pt"))


def test_a_write_that_fails_says_so_and_leaves_the_earlier_file(tmp_path):
    """torch's file writer reports a full disk as a RuntimeError ("unexpected pos ..."): it
    becomes an OSError naming the file, and the file written before stays whole."""
    from phys_l2o.meta.checkpoint import atomic_write

    path = tmp_path / "hnn.pt"
    path.write_bytes(b"earlier")

    def full_disk(tmp):
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 128 vs 0")

    with pytest.raises(OSError, match="could not write the file") as info:
        atomic_write(path, full_disk)
    assert info.value.filename == str(path)
    assert path.read_bytes() == b"earlier" and [p.name for p in tmp_path.iterdir()] == ["hnn.pt"]
