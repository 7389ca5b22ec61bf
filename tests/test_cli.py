"""The `phys-l2o` command line: the smoke reproduction and errors on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from phys_l2o.cli import main

NAMES = {"hnn", "lstm", "adam", "rmsprop", "sgd", "nag"}


def test_reproduce_quadratic_smoke_writes_reports(tmp_path):
    out = tmp_path / "quad"
    assert main(["reproduce", "quadratic", "--budget", "smoke", "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    assert (out / "curves.png").stat().st_size > 10_000
    md = (out / "results.md").read_text()
    assert "Table A1" in md and "| HNN | 19 |" in md and "| LSTM | 5221 |" in md
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "quadratic" and results["budget"] == "smoke"
    assert results["seed"] == 0 and results["steps"] == 100 and results["problems"] == 100
    assert set(results["optimizers"]) == NAMES
    assert results["optimizers"]["hnn"]["params"] == 19
    assert results["optimizers"]["lstm"]["params"] == 5221
    assert results["optimizers"]["adam"]["params"] is None
    for entry in results["optimizers"].values():
        final = entry["final_loss"]
        assert final["ci95"][0] <= final["mean"] <= final["ci95"][1]
        assert isinstance(final["median"], float)
        assert len(entry["curve"]) == 100
    assert (out / "checkpoints" / "hnn.pt").exists()

    # the checkpoint written by `reproduce` evaluates on its own
    ev = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(out / "checkpoints" / "hnn.pt"),
                 "--problems", "10", "--out", str(ev), "--no-progress", "--device", "cpu"]) == 0
    assert json.loads((ev / "results.json").read_text())["optimizers"]["hnn"]["params"] == 19


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "phys_l2o.cli", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, expected", [
    (["reproduce", "cubic"], "quadratic"),
    (["train", "--optimizer", "adamw", "--out", "x.pt"], "hnn"),
    (["evaluate", "--optimizer", "adagrad"], "adam"),
    (["evaluate", "--optimizer", "adam", "--steps", "0"], "positive integer"),
    (["train", "--unroll", "-3", "--out", "x.pt"], "positive integer"),
    (["reproduce", "quadratic", "--budget", "huge"], "smoke"),
])
def test_bad_options_exit_nonzero_and_name_the_choices(args, expected):
    proc = run_cli(*args)
    assert proc.returncode != 0
    assert expected in proc.stderr


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_diverging_training_writes_nothing(tmp_path, capsys):
    out = tmp_path / "lstm.pt"
    code = main(["train", "--optimizer", "lstm", "--out-mul", "1e30", "--epochs", "1",
                 "--trajectories", "2", "--steps", "10", "--validation-problems", "2",
                 "--out", str(out), "--no-progress", "--device", "cpu"])
    assert code == 1 and not out.exists()
    assert "Lower the meta learning rate" in capsys.readouterr().err


def test_train_then_evaluate_baseline(tmp_path, capsys):
    out = tmp_path / "hnn.pt"
    assert main(["train", "--epochs", "1", "--trajectories", "2", "--validation-problems", "4",
                 "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    assert out.exists()
    assert main(["evaluate", "--optimizer", "sgd", "--problems", "5", "--no-progress"]) == 0
    assert "| SGD |" in capsys.readouterr().out


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(),
                    reason="the offline MNIST folder ../shared/data is not beside the project")
def test_reproduce_mnist_smoke_writes_both_tables(tmp_path):
    out = tmp_path / "mnist"
    assert main(["reproduce", "mnist", "--budget", "smoke", "--data-root", str(SHARED_DATA),
                 "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    md = (out / "results.md").read_text()
    assert "Table A2" in md and "Table A3" in md and "| HNN | 55 |" in md
    assert "| LSTM | 5301 |" in md and "test split" in md
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "mnist" and results["data"]["split"] == "test"
    assert set(results["nets"]) == {"sigmoid", "relu"}
    for net in results["nets"].values():
        assert set(net["optimizers"]) == NAMES
        assert len(net["optimizers"]["adam"]["curve"]) == 100
    assert (out / "curves_sigmoid.png").exists() and (out / "curves_relu.png").exists()
