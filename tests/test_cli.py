"""The `phys-l2o` command line: the smoke reproduction and errors on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from phys_l2o import load_checkpoint, registered, spec_of
from phys_l2o.cli import main

BASELINES = {"adam", "rmsprop", "sgd", "nag"}
#: the methods of a paper run: the learned optimizers, the baselines at the paper's rates and
#: tuned
NAMES = {"hnn", "lstm", *BASELINES, *(f"{b}-tuned" for b in BASELINES)}


def test_only_the_commands_own_process_keeps_freed_memory(monkeypatch, tmp_path, capsys):
    # a process-wide allocator setting (parallel.py, "Memory"): the command applies it to its
    # own process; a program that calls main([...]) keeps its allocator as it is
    import phys_l2o.parallel as parallel

    calls = []
    monkeypatch.setattr(parallel, "keep_freed_memory", lambda: calls.append(1) or True)
    # a missing checkpoint: a quick way through main, past the parsing of the options
    argv = ["evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--task", "quadratic"]
    assert main(argv) == 2 and calls == []
    monkeypatch.setattr(sys, "argv", ["phys-l2o", *argv])
    assert main() == 2 and calls == [1]
    assert "no checkpoint at" in capsys.readouterr().err


def test_reproduce_quadratic_smoke_writes_reports(tmp_path):
    out = tmp_path / "quad"
    assert main(["reproduce", "quadratic", "--budget", "smoke", "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    assert (out / "curves-quadratic.png").stat().st_size > 10_000
    assert (out / "intervals.png").stat().st_size > 5_000
    md = (out / "results.md").read_text()
    assert "Table A1" in md and "| HNN | 19 |" in md and "| LSTM | 5221 |" in md
    results = json.loads((out / "results.json").read_text())
    assert results["sweep"] == "paper-quadratic" and results["budget"] == "smoke"
    assert results["seeds"] == [0] and results["threads"] == 1 and results["engine"] == "local"
    assert results["sizes"]["steps"] == 100 and results["sizes"]["test_problems"] == 100
    methods = results["targets"]["quadratic"]
    assert set(methods) == NAMES
    assert methods["hnn"]["params"] == 19 and methods["lstm"]["params"] == 5221
    assert methods["adam"]["params"] is None
    for name, entry in methods.items():
        final = entry["final_loss"]
        assert final["ci95"][0] <= final["mean"] <= final["ci95"][1]
        assert isinstance(final["median"], float)
        assert len(entry["curve"]) == 100
        assert ("paired_diff" in entry) == (name != "hnn")
    checkpoint = out / "cells" / "hnn" / "seed-0.pt"
    assert checkpoint.exists()

    # the checkpoint written by `reproduce` evaluates on its own
    ev = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(checkpoint),
                 "--problems", "10", "--out", str(ev), "--no-progress", "--device", "cpu"]) == 0
    assert json.loads((ev / "results.json").read_text())["optimizers"]["hnn"]["params"] == 19

    # the run packs into pretrained weights with their manifest
    packed = tmp_path / "packed"
    packed.mkdir()
    proc = subprocess.run([str(Path(sys.executable).with_name("phys-l2o")), "pack", "--commit",
                           "abc", "--into", str(packed), str(out)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((packed / "manifest.json").read_text())["optimizers"]
    assert set(manifest) == {"hnn-quadratic", "lstm-quadratic"}
    entry = manifest["hnn-quadratic"]
    assert entry["command"].endswith("--out runs/quadratic --device cpu --no-progress")
    assert entry["test"]["quadratic"] == results["targets"]["quadratic"]["hnn"]["final_loss"]
    assert entry["threads"] == 1 and entry["seed"] == 0 and entry["budget"] == "smoke"
    optimizer, _ = load_checkpoint(packed / "hnn-quadratic.pt")
    assert spec_of(optimizer) == entry["spec"]
    assert "wrote hnn-quadratic.pt (19 weights" in proc.stdout

    # the run's cells decide the quadratic claims (the MNIST run is not there)
    claims = tmp_path / "claims.md"
    assert main(["claims", f"corrected={out},{tmp_path / 'no-mnist'}", "--out",
                 str(claims)]) == 0
    text = claims.read_text()
    assert text.startswith("| the paper's claim | corrected |")
    assert "quadratic: the HNN beats the LSTM" in text and "MNIST" not in text


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "phys_l2o.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_the_command_exits_nonzero_and_names_the_choices_from_a_fresh_process():
    proc = run_cli("reproduce", "cubic")
    assert proc.returncode != 0
    assert "quadratic" in proc.stderr


@pytest.mark.parametrize("args, expected", [
    (["train", "--optimizer", "adamw", "--out", "x.pt"], "hnn-param"),
    (["train", "--config", "none.toml", "--out", "x.pt"], "no config file"),
    (["evaluate", "--optimizer", "adagrad"], "adam"),
    (["evaluate", "--optimizer", "adam", "--steps", "0"], "positive integer"),
    (["train", "--unroll", "-3", "--out", "x.pt"], "positive integer"),
    (["reproduce", "quadratic", "--budget", "huge"], "smoke"),
])
def test_bad_options_exit_nonzero_and_name_the_choices(args, expected, capsys, tmp_path,
                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code != 0
    assert expected in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


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
    assert results["sweep"] == "paper-mnist" and "test split" in results["data_notes"][0]
    assert set(results["targets"]) == {"sigmoid", "relu"}
    assert set(results["targets"]["sigmoid"]) == NAMES
    # the ReLU net is watched during meta-training: oracle rows beside the learned ones
    assert set(results["targets"]["relu"]) == NAMES | {"hnn (oracle epoch)",
                                                       "lstm (oracle epoch)"}
    for methods in results["targets"].values():
        assert len(methods["adam"]["curve"]) == 100
    assert [row["kept_epoch"] for row in results["transfer"]] == [
        results["targets"]["sigmoid"][m]["meta_training"][0]["best_epoch"] for m in
        ("hnn", "lstm")]
    for name in ("curves-sigmoid.png", "curves-relu.png", "transfer.png"):
        assert (out / name).exists()


SMOKE = ["--budget", "smoke", "--no-progress", "--device", "cpu"]


@pytest.mark.parametrize("name", sorted(registered("optimizer")))
def test_every_listed_learned_optimizer_trains_at_the_smoke_budget(name, tmp_path):
    out = tmp_path / f"{name}.pt"
    # a smoke budget need not improve on the untrained weights: allow them
    assert main(["train", "--optimizer", name, "--out", str(out), "--allow-untrained",
                 *SMOKE]) == 0
    optimizer, meta = load_checkpoint(out)
    assert optimizer.name == name and meta["task"] == "quadratic"


@pytest.mark.parametrize("name", sorted(registered("baseline")))
def test_every_listed_baseline_evaluates(name, capsys):
    assert main(["evaluate", "--optimizer", name, "--problems", "3", "--steps", "5",
                 "--no-progress", "--device", "cpu"]) == 0
    assert "diverged" not in capsys.readouterr().out


CONFIG = """
[optimizer]
type = "hnn"
preprocessing = false

[optimizer.field]
type = "port-hamiltonian"
potential = { type = "scalar-potential-mlp", hidden = 8 }
inverse_inertia = { type = "cholesky-inertia", eps = 0.001 }
dissipation = { type = "psd-dissipation" }
control = false

[optimizer.readout]
type = "flow-readout"
flow = { type = "rk4", horizon = 0.5 }

[task]
type = "quadratic"
dim = 6

[schedule]
epochs = 1
trajectories = 2
steps = 20
"""


def test_train_from_a_config_file_then_evaluate_the_checkpoint(tmp_path, capsys):
    config = tmp_path / "mine.toml"
    config.write_text(CONFIG)
    out = tmp_path / "mine.pt"
    assert main(["train", "--config", str(config), "--out", str(out), *SMOKE]) == 0
    optimizer, meta = load_checkpoint(out)
    spec = spec_of(optimizer)
    assert spec["field"]["potential"] == {"type": "scalar-potential-mlp", "hidden": 8}
    assert optimizer.field.control is None and spec["field"].get("control", False) is False
    assert spec["readout"]["flow"]["horizon"] == 0.5
    assert meta["schedule"]["epochs"] == 1 and meta["schedule"]["steps"] == 20
    assert main(["evaluate", "--checkpoint", str(out), "--problems", "4", "--no-progress",
                 "--device", "cpu"]) == 0
    assert "| hnn |" in capsys.readouterr().out.lower()


@pytest.mark.parametrize("text, expected", [
    ("[optimizer]\ntype = 'hnn'\nintegrator = 'rk4'\n", "takes no option ['integrator']"),
    ("[optimizer]\ntype = 'my-optimizer'\n", "'my-optimizer' is not registered"),
    ("[task]\ntype = 'quadratic'\n", "has no [optimizer] table"),
    ("[optimizer]\ntype = 'hnn'\n[schedul]\nepochs = 1\n", "unknown tables ['schedul']"),
    ("[optimizer]\ntype = 'hnn'\n[schedule]\nepoch = 1\n", "bad [schedule]"),
    ("[optimizer\ntype = 'hnn'\n", "not valid TOML"),
])
def test_bad_config_files_are_clear_errors(text, expected, tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "x.pt"),
                 *SMOKE]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("task", sorted(registered("task")))
def test_every_listed_task_trains_at_the_smoke_budget(task, tmp_path, mnist_test_only_root,
                                                      capsys):
    """Every task trains by its bare name, except a family whose defaults are a task of the
    held-out suite: that one is refused, before anything is written."""
    from phys_l2o.bench import SuiteError, check_not_heldout

    out = tmp_path / "hnn.pt"
    try:
        check_not_heldout(task)
        held_out = False
    except SuiteError:
        held_out = True
    code = main(["train", "--task", task, "--out", str(out), "--data-root",
                 str(mnist_test_only_root), "--allow-untrained", *SMOKE])
    if held_out:
        assert code == 2 and "held-out task" in capsys.readouterr().err
        assert not out.exists() and not out.with_suffix(".training.pt").exists()
        return
    assert code == 0
    assert load_checkpoint(out)[1]["task"] == task
