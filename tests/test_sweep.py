"""Sweeps: files as data, cells written as they finish, resume after ``kill -9``, worker
processes, torchrun refused, the thread policy; the experiments package: the paper's presets
read from its parsed sweeps, one training path for `train` and the sweep, no import circle."""

from __future__ import annotations

import ast
import ctypes
import importlib.util
import json
import pkgutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import phys_l2o
from phys_l2o import load_checkpoint, parallel
from phys_l2o.experiments import paper
from phys_l2o.experiments.compose import PACKAGE_DIR
from phys_l2o.experiments.folder import RunFolder
from phys_l2o.experiments.runner import run_sweep
from phys_l2o.experiments.spec import Sweep, SweepError, load_sweep

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted((ROOT / "ablations").glob("*.toml")) + sorted(PACKAGE_DIR.glob("*.toml"))

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
    # each method against the reference at both levels: 2 seeds against 2, a baseline
    against = report["against_reference"]["quadratic"]
    assert list(against) == ["no control", "sgd", "adam"]
    assert against["no control"]["seeds"]["of"] == 4 and against["sgd"]["seeds"]["of"] == 2
    assert all(c["direction"] in ("lower", "higher", None) for c in against.values())
    text = (out / "results.md").read_text()
    assert "## Against HNN, over test problems and over seeds" in text
    assert text.count("| quadratic | ") >= 3

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
    mine = [out / "cells" / "b" / "img.tif", out / "cells" / "hnn" / "notes.txt"]
    for path in mine:                  # a user's files: --overwrite removes only the run's
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")
    run_sweep(tiny, "other", out=out, device="cpu", progress=False, overwrite=True)
    assert "0 finished cells reused" in capsys.readouterr().out
    assert len(finals(out)) == 6
    assert all(path.read_text() == "mine" for path in mine)

    # a second process on the same folder is refused while a run holds its lock
    from filelock import FileLock

    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with FileLock(RunFolder(out).lock_path):
        with pytest.raises(SweepError, match="another phys-l2o process is running into"):
            run_sweep(tiny, "other", out=out, device="cpu", progress=False, overwrite=True)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before   # nothing removed


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


def test_a_sweep_refuses_torchrun_and_says_what_to_use(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SweepError, match="without torchrun; for several machines use --engine ray"):
        run_sweep(tiny, out=tmp_path / "out", device="cpu", progress=False)
    assert not (tmp_path / "out").exists()


def test_workers_give_the_results_of_one_process_longest_cells_first(tiny, tmp_path, capsys):
    from phys_l2o.experiments.plan import make_plan
    from phys_l2o.experiments.runner import default_workers, expected_cost, group_jobs

    plan = make_plan(load_sweep(tiny), None, out=tmp_path / "plan")
    order = group_jobs(plan, plan.cells(), 2, None)           # no groups: a job per cell
    assert [len(job) for job in order] == [1] * 6
    assert [job[0].learned for job in order] == [True] * 4 + [False] * 2  # meta-training first
    assert expected_cost(plan, order[0][0]) >= expected_cost(plan, order[3][0]) > 0
    # a variant whose step costs more goes first (the measured seconds of a step)
    from phys_l2o.experiments.runner import step_seconds
    from phys_l2o.tasks import QuadraticTask

    costs = step_seconds(plan, ["hnn", "no control"], QuadraticTask())
    assert set(costs) == {"hnn", "no control"} and min(costs.values()) > 0
    costly = group_jobs(plan, plan.cells(), 2, None, {"hnn": 1.0, "no control": 5.0})
    assert [job[0].method for job in costly[:2]] == ["no control"] * 2
    assert default_workers(1, torch.device("cpu"), 1) == 1  # one job: one process
    assert default_workers(6, torch.device("cuda"), 1) == 1  # a GPU is not shared

    one = run_sweep(tiny, out=tmp_path / "one", device="cpu", progress=False, workers=1)
    capsys.readouterr()
    two = run_sweep(tiny, out=tmp_path / "two", device="cpu", progress=False, workers=2)
    assert "6 to run on 2 workers" in capsys.readouterr().out
    assert two["workers"] == 2 and one["workers"] == 1
    assert finals_only(finals(tmp_path / "two")) == finals_only(finals(tmp_path / "one"))
    with pytest.raises(SweepError, match="workers must be a positive integer"):
        run_sweep(tiny, out=tmp_path / "bad", workers=0)


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
    from phys_l2o.experiments import training

    real = training.meta_train

    def resumed(*args, **kwargs):  # as if 1000 s of meta-training ran before this process
        result = real(*args, **kwargs)
        result.seconds += 1000.0
        return result

    monkeypatch.setattr(training, "meta_train", resumed)
    started = time.perf_counter()
    # one worker: the cells run in this process, where meta_train is replaced
    run_sweep(tiny, out=tmp_path / "out", device="cpu", progress=False, seeds=1, workers=1)
    took = time.perf_counter() - started
    for path in (tmp_path / "out" / "cells").glob("*/*.json"):
        record = json.loads(path.read_text())
        if record["kind"] == "learned":
            assert 1000.0 < record["seconds"] < 1000.0 + took
            assert record["meta_training"]["seconds"] > 1000.0
        else:
            assert record["seconds"] < took


def test_the_paper_presets_are_views_of_the_parsed_paper_sweeps():
    for task in ("quadratic", "mnist"):
        sweep = paper.paper_sweep(task)
        assert sweep is paper.paper_sweep(task) and sweep == load_sweep(
            PACKAGE_DIR / f"paper-{task}.toml")
        for variant in sweep.variants:
            preset = paper.learned_preset(task, variant.name)
            assert preset == {"optimizer": variant.optimizer, **variant.settings}
        schedule = paper.paper_schedule(task, "lstm", "smoke", epochs=3)
        lstm = sweep.variant("lstm")
        assert (schedule.epochs, schedule.trajectories) == (3, sweep.budgets["smoke"][
            "trajectories"])
        assert (schedule.unroll, schedule.meta_lr) == (lstm.settings["unroll"],
                                                       lstm.settings["meta_lr"])
        for target in sweep.targets:
            key = paper.target_key(task, target.label)
            assert paper.paper_targets()[key] is target
    assert sorted(paper.paper_targets()) == ["mnist-relu", "mnist-sigmoid", "quadratic"]
    relu = {"type": "mnist", "activation": "relu", "pool": "test"}
    assert paper.paper_baselines(relu)["sgd"] == {"type": "sgd", "lr": 0.3}
    assert paper.paper_baselines("mnist")["sgd"] == {"type": "sgd", "lr": 1.0}
    assert paper.paper_baselines("quadratic") == paper.paper_baselines("module")
    # an optimizer the paper did not train: its defaults
    assert paper.learned_preset("quadratic", "hnn-param")["unroll"] == 15
    with pytest.raises(SweepError, match="no paper sweep"):
        paper.paper_sweep("cubic")


def test_train_and_a_one_variant_sweep_train_the_same_weights(tmp_path):
    """``phys-l2o train`` and a sweep's learned cell go through one ``train_variant``."""
    from phys_l2o.cli import main

    spec = {"type": "hnn", "out_mul": 0.001}
    schedule = {"epochs": 2, "trajectories": 2, "meta_batch": 1, "steps": 12, "unroll": 4,
                "meta_lr": 0.01, "validation_problems": 3}
    config = tmp_path / "hnn.toml"
    config.write_text(phys_l2o.to_toml({"optimizer": spec, "task": {"type": "quadratic"},
                                        "schedule": schedule}))
    assert main(["train", "--config", str(config), "--seed", "1", "--out",
                 str(tmp_path / "hnn.pt"), "--no-progress", "--device", "cpu",
                 "--allow-untrained", "--no-compile"]) == 0
    sizes = {k: schedule[k] for k in ("epochs", "trajectories", "meta_batch", "steps",
                                      "validation_problems")}
    sweep = Sweep.from_dict({
        "name": "one", "train": {"type": "quadratic"},
        "budgets": {"b": {**sizes, "test_problems": 2, "seeds": 1}},
        "targets": {"quadratic": {"task": {"type": "quadratic"}}},
        "variants": [{"name": "hnn", "optimizer": spec, "unroll": 4, "meta_lr": 0.01}]})
    run_sweep(sweep, out=tmp_path / "run", seeds=[1], device="cpu", progress=False,
              compile=False)
    trained, _ = load_checkpoint(tmp_path / "hnn.pt")
    swept, record = load_checkpoint(tmp_path / "run" / "cells" / "hnn" / "seed-1.pt")
    assert record["schedule"] == load_checkpoint(tmp_path / "hnn.pt")[1]["schedule"]
    for (name, a), b in zip(trained.state_dict().items(), swept.state_dict().values()):
        assert torch.equal(a, b), name


def module_imports(name: str, path: Path, is_package: bool) -> set[str]:
    """The ``phys_l2o`` modules that module ``name`` imports anywhere in its source (function
    bodies and ``TYPE_CHECKING`` blocks included), relative imports resolved; ``from X import
    y`` counts as ``X.y`` where that is a module."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("phys_l2o")}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``graph`` with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for other in graph[name]:
            if other not in index:
                visit(other)
                low[name] = min(low[name], low[other])
            elif other in stack:
                low[name] = min(low[name], index[other])
        if low[name] == index[name]:
            component = []
            while not component or component[-1] != name:
                component.append(stack.pop())
            if len(component) > 1:
                circles.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return circles


def test_no_import_circle_anywhere_in_the_package():
    """The package's modules import one another in one direction: every import counts, also
    inside functions and ``TYPE_CHECKING`` blocks, except those of the top-level package
    ``phys_l2o`` (a lazy namespace that names everything)."""
    modules = {"phys_l2o": (Path(phys_l2o.__file__), True)}
    for info in pkgutil.walk_packages(phys_l2o.__path__, "phys_l2o."):
        spec = importlib.util.find_spec(info.name)
        modules[info.name] = (Path(spec.origin), info.ispkg)
    graph = {name: {m for m in module_imports(name, *where) if m in modules and m != name
                    and m != "phys_l2o"}
             for name, where in modules.items()}
    assert "phys_l2o.experiments.spec" in graph["phys_l2o.experiments.runner"]
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    circles = import_circles(graph)
    assert not circles, f"import circles: {circles}"


def test_a_changed_sweep_file_reuses_the_cells_it_did_not_change(tiny, tmp_path, capsys):
    """A new title, an added variant and a changed one: the finished cells whose spec,
    schedule, seed and targets are unchanged are reused, the changed variant's rerun."""
    out = tmp_path / "run"
    run_sweep(tiny, "other", out=out, device="cpu", progress=False, seeds=1)
    before = {p.name + p.parent.name: p.read_bytes() for p in (out / "cells").glob("*/*.json")}
    capsys.readouterr()
    head, tail = TINY.replace('title = "A tiny sweep"', 'title = "Tiny, renamed"').rsplit(
        "unroll = 5", 1)
    changed = (head + "unroll = 4" + tail +
               '\n[[variants]]\nname = "hnn wide"\noptimizer = { type = "hnn", out_mul = 0.002 }'
               '\nunroll = 5\n')
    (tmp_path / "changed.toml").write_text(changed)
    run_sweep(tmp_path / "changed.toml", "other", out=out, device="cpu", progress=False,
              seeds=1)
    printed = capsys.readouterr().out
    assert "1 finished cell rerun" in printed and "no control (seed 0)" in printed
    assert "3 finished cells reused, 2 to run" in printed
    after = {p.name + p.parent.name: p.read_bytes() for p in (out / "cells").glob("*/*.json")}
    for key in ("seed-0.jsonhnn", "baseline.jsonsgd", "baseline.jsonadam"):
        assert after[key] == before[key], key                      # reused as they were
    assert after["seed-0.jsonno-control"] != before["seed-0.jsonno-control"]
    assert "seed-0.jsonhnn-wide" in after
    with pytest.raises(SweepError, match="another sweep"):          # another sweep's name
        (tmp_path / "renamed.toml").write_text(changed.replace('name = "tiny"', 'name = "x"'))
        run_sweep(tmp_path / "renamed.toml", "other", out=out, device="cpu", progress=False)


def test_tuned_baselines_join_a_finished_run_and_tune_apart_from_the_test_problems(
        tiny, tmp_path, capsys):
    """Adding ``tuned`` (and the optional ``tuning_problems``) to a finished run reuses every
    cell (records without their dependencies too: the earlier run's sweep.json gives them) and
    runs only the tuned baseline: each rate of the grid on its own problems, the
    best one (lowest mean loss there) then evaluated on the same test problems as the rest."""
    out = tmp_path / "run"
    run_sweep(tiny, "other", out=out, device="cpu", progress=False, seeds=1)
    capsys.readouterr()
    for path in (out / "cells").glob("*/*.json"):  # records of a version before `depends`
        record = json.loads(path.read_text())
        del record["depends"]
        path.write_text(json.dumps(record))
    tuned = (TINY.replace('name = "tiny"\n', 'name = "tiny"\ntuning_grid = [1e-3, 1e-2, 0.1]\n')
             .replace("test_problems = 8\nsteps = 12\nseeds = 2\n\n[targets",
                      "test_problems = 8\ntuning_problems = 6\nsteps = 12\nseeds = 2\n\n[targets")
             .replace('baselines.adam = { type = "adam", lr = 0.1 }',
                      'baselines.adam = { type = "adam", lr = 0.1 }\ntuned = ["sgd"]'))
    (tmp_path / "tuned.toml").write_text(tuned)
    run_sweep(tmp_path / "tuned.toml", "other", out=out, device="cpu", progress=False, seeds=1)
    assert "4 finished cells reused, 1 to run" in capsys.readouterr().out
    cell = json.loads((out / "cells" / "sgd-tuned" / "baseline.json").read_text())
    tuning = cell["tuning"]["quadratic"]
    assert tuning["problems"] == 6 and set(tuning["tuning"]) == {"0.001", "0.01", "0.1"}
    best = min(tuning["tuning"], key=tuning["tuning"].get)
    assert cell["spec"]["quadratic"] == {"type": "sgd", "lr": float(best)} == \
        {"type": "sgd", "lr": tuning["lr"]}
    fixed = json.loads((out / "cells" / "sgd" / "baseline.json").read_text())
    assert fixed["spec"]["quadratic"]["lr"] == 0.01
    if tuning["lr"] == 0.01:  # the same rate on the same test problems: the same losses
        assert cell["targets"]["quadratic"]["final"] == fixed["targets"]["quadratic"]["final"]
    results = json.loads((out / "results.json").read_text())
    assert "sgd-tuned" in json.dumps(results)
