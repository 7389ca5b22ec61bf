"""A table of bad inputs and faults, command line and API: each gives a clear error that names
the problem (no traceback), and leaves the earlier outputs beside it byte for byte."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from phys_l2o import (
    HNN,
    LSTMOptimizer,
    ModuleTask,
    PortHamiltonianField,
    QuadraticTask,
    Schedule,
    SpecError,
    build,
    load_checkpoint,
    meta_train,
    paper_field,
    register,
    save_checkpoint,
)
from phys_l2o.cli import main
from phys_l2o.optim import LearnedOptim
from phys_l2o.tasks import MNISTTask

CONFIGS = {
    "bad.toml": "[optimizer\ntype = 'hnn'\n",
    "no-optimizer.toml": "[task]\ntype = 'quadratic'\n",
    "unknown-table.toml": "[optimizer]\ntype = 'hnn'\n[schedul]\nepochs = 1\n",
    "unknown-type.toml": "[optimizer]\ntype = 'my-optimizer'\n",
    "bad-option.toml": "[optimizer]\ntype = 'hnn'\nintegrator = 'rk4'\n",
    "bad-schedule.toml": "[optimizer]\ntype = 'hnn'\n[schedule]\nepoch = 3\n",
    "bool-schedule.toml": "[optimizer]\ntype = 'hnn'\n[schedule]\nepochs = true\n",
    "string-number.toml": "[optimizer]\ntype = 'hnn'\nout_mul = '0.1'\n",
    "width.toml": "[optimizer]\ntype = 'hnn'\npreprocessing = true\n[optimizer.field]\n"
                  "type = 'port-hamiltonian'\npotential = { type = 'scalar-potential-mlp', "
                  "width = 1 }\n",
    "with-task.toml": "[optimizer]\ntype = 'hnn'\n[task]\ntype = 'quadratic'\n",
    "scalar.toml": "[optimizer]\ntype = 'hnn'\n[optimizer.field]\ntype = 'port-hamiltonian'\n"
                   "potential = 'scalar-potential-mlp'\n",
    "adaptive.toml": "[optimizer]\ntype = 'hnn'\n[optimizer.readout]\ntype = 'flow-readout'\n"
                     "flow = 'dopri5'\n",
    "readout-flow.toml": "[optimizer]\ntype = 'hnn'\nreadout = 'rk4'\n",
    "task-as-optimizer.toml": "[optimizer]\ntype = 'quadratic'\n",
    "negative-width.toml": "[optimizer]\ntype = 'hnn'\n[optimizer.field]\n"
                           "type = 'port-hamiltonian'\npotential = { type = "
                           "'potential-gradient-mlp', hidden = -3 }\n",
    "deep.toml": "a = " + "[" * 3000 + "]" * 3000 + "\n",
}


SWEEP = """name = "s"
train = { type = "quadratic" }
[budgets.tiny]
epochs = 1
trajectories = 1
meta_batch = 1
validation_problems = 2
test_problems = 2
steps = 3
seeds = 1
[targets.q]
task = { type = "quadratic" }
baselines.sgd = { type = "sgd", lr = 0.01 }
[[variants]]
name = "hnn"
optimizer = { type = "hnn" }
"""
SWEEPS = {
    "sweep-bad.toml": SWEEP.replace("[budgets.tiny]", "[budgets.tiny"),
    "sweep-key.toml": "epochs = 3\n" + SWEEP,
    "sweep-budget.toml": SWEEP.replace("seeds = 1\n", ""),
    "sweep-clash.toml": SWEEP.replace('name = "hnn"', 'name = "sgd"'),
    "sweep-type.toml": SWEEP.replace('{ type = "hnn" }', '{ type = "hnm" }'),
    "sweep-option.toml": SWEEP.replace('{ type = "hnn" }', '{ type = "hnn", integrator = "rk4" }'),
    "sweep-variant.toml": SWEEP + "epoch = 3\n",
    "sweep-reference.toml": 'reference = "adam"\n' + SWEEP,
    "sweep-baseline.toml": SWEEP.replace('type = "sgd", lr = 0.01', 'type = "sgd", lr = -1'),
    "sweep-adaptive.toml": SWEEP.replace('{ type = "hnn" }', '{ type = "hnn", readout = { type '
                                          '= "flow-readout", flow = "dopri5" } }'),
    "sweep-path-name.toml": SWEEP.replace('name = "s"', 'name = "../../elsewhere"'),
    "sweep-task.toml": SWEEP.replace('train = { type = "quadratic" }',
                                     'train = { type = "quadratic", dim = 0 }'),
    "sweep-target.toml": SWEEP.replace('task = { type = "quadratic" }',
                                       'task = { type = "quadratic", condition = -1.0 }'),
    "sweep.toml": SWEEP,
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Earlier outputs and damaged inputs, side by side."""
    root = tmp_path_factory.mktemp("workspace")
    torch.manual_seed(0)
    save_checkpoint(root / "hnn.pt", HNN(), task="quadratic")
    payload = torch.load(root / "hnn.pt", weights_only=True)
    payload["spec"] = {"type": "hnn", "field": {"type": "port-hamiltonian",
                                                "potential": "my-lost-potential"}}
    torch.save(payload, root / "unregistered.pt")
    payload = torch.load(root / "hnn.pt", weights_only=True)
    payload["spec"] = {"type": "hnn", "preprocessing": True}
    torch.save(payload, root / "mismatch.pt")
    torch.save({"weights": torch.zeros(3)}, root / "not-a-checkpoint.pt")
    (root / "corrupt.pt").write_bytes((root / "hnn.pt").read_bytes()[:200])
    (root / "a-file").write_text("not a folder")
    for folder, files in {"earlier-run": ["results.json", "results.md", "curves.png"],
                          "earlier-eval": ["results.json"]}.items():
        (root / folder).mkdir()
        for name in files:
            (root / folder / name).write_text(f"{folder}/{name} of an earlier run")
    (root / "empty").mkdir()
    for name, text in {**CONFIGS, **SWEEPS}.items():
        (root / name).write_text(text)
    (root / "earlier-sweep").mkdir()
    (root / "earlier-sweep" / "sweep.json").write_text('{"format": "phys-l2o-sweep/1", '
                                                        '"sweep": {"name": "other"}}')
    return root


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (``None``), so that an empty folder left behind
    counts too."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


W = "{w}"  # stands for the workspace folder in the table
TRAIN = ["train", "--budget", "smoke", "--no-progress", "--device", "cpu"]
EVAL = ["evaluate", "--no-progress", "--device", "cpu", "--problems", "2", "--steps", "3"]

#: (arguments, a part of the error message)
CLI_CASES = [
    (["reproduce", "cubic"], "invalid choice"),
    (["reproduce", "quadratic", "--out", ""], "an empty path"),
    ([*EVAL, "--optimizer", "adam", "--problems", "100000000000"],
     "evaluating 100000000000 problems needs at least 64000.0 GB of memory"),
    (["sweep", f"{W}/sweep.toml", "--out", " "], "an empty path"),
    (["sweep", f"{W}/sweep-path-name.toml"], "must be a plain name"),
    (["sweep", f"{W}/sweep-task.toml", "--out", f"{W}/new-run"],
     "sweep 's', [train] task: dim must be"),
    (["sweep", f"{W}/sweep-target.toml", "--out", f"{W}/new-run"], "[targets.q] task:"),
    ([*TRAIN, "--out", ""], "an empty path"),
    (["reproduce", "quadratic", "--budget", "huge"], "invalid choice"),
    (["reproduce", "quadratic", "--out", f"{W}/earlier-run"], "holds results of another run"),
    (["reproduce", "quadratic", "--out", f"{W}/a-file"], "is a file, not a folder"),
    (["reproduce", "quadratic", "--out", f"{W}/a-file/run"], "is a file, not a folder"),
    (["reproduce", "quadratic", "--meta-batch", "0"], "positive integer"),
    (["reproduce", "quadratic", "--resume"], "unrecognized arguments: --resume"),
    (["reproduce", "quadratic", "--seeds", "0"], "positive integer"),
    (["reproduce", "quadratic", "--threads", "0"], "positive integer"),
    (["train", "--task", "quadratic", "--timeout", "0"], "positive number"),
    (["sweep", f"{W}/sweep.toml", "--timeout", "5"], "unrecognized arguments: --timeout"),
    (["sweep", f"{W}/sweep.toml", "--engine", "slurm"], "invalid choice: 'slurm'"),
    (["reproduce", "quadratic", "--protocol", "original"], "invalid choice: 'original'"),
    (["reproduce", "quadratic", "--max-seeds", "lstm"], "expected METHOD=N"),
    (["reproduce", "quadratic", "--max-seeds", "lstm=0"], "positive integer"),
    (["reproduce", "quadratic", "--max-seeds", "adam=1"], "'adam', which is not a variant"),
    (["sweep", f"{W}/missing.toml"], "no sweep file"),
    (["sweep", f"{W}/sweep-bad.toml"], "not valid TOML"),
    (["sweep", f"{W}/sweep-key.toml"], "unknown keys ['epochs']"),
    (["sweep", f"{W}/sweep-budget.toml"], "missing ['seeds']"),
    (["sweep", f"{W}/sweep-clash.toml"], "method names must be unique"),
    (["sweep", f"{W}/sweep-type.toml"], "'hnm' is not registered"),
    (["sweep", f"{W}/sweep-option.toml"], "takes no option ['integrator']"),
    (["sweep", f"{W}/sweep-variant.toml"], "unknown keys ['epoch']"),
    (["sweep", f"{W}/sweep-reference.toml"], "reference 'adam' is neither"),
    (["sweep", f"{W}/sweep-baseline.toml"], "learning rate must be"),
    (["sweep", f"{W}/sweep.toml", "--budget", "huge"], "has no budget 'huge'"),
    (["sweep", f"{W}/sweep.toml", "--seeds", "0"], "positive integer"),
    (["sweep", f"{W}/sweep.toml", "--seed", "1"], "unrecognized arguments: --seed"),
    (["sweep", f"{W}/sweep.toml", "--out", f"{W}/earlier-run"], "holds results of another run"),
    (["sweep", f"{W}/sweep.toml", "--out", f"{W}/earlier-sweep"], "holds a run of another sweep"),
    (["sweep", f"{W}/sweep.toml", "--out", f"{W}/a-file"], "is a file, not a folder"),
    (["sweep", f"{W}/sweep.toml", "--device", "tpu"], "invalid choice"),
    (["sweep", f"{W}/sweep-adaptive.toml", "--compile"], "cannot be compiled"),
    (["reproduce", "quadratic", "--seed", "-1", "--out", f"{W}/new-run"],
     "expected an integer >= 0"),
    (["reproduce", "quadratic", "--device", "tpu"], "invalid choice"),
    ([*TRAIN, "--optimizer", "adamw", "--out", f"{W}/x.pt"], "invalid choice"),
    ([*TRAIN, "--out", W], "is a folder"),
    ([*TRAIN, "--out", f"{W}/a-file/x.pt"], "is a file, not a folder"),
    ([*TRAIN, "--out", f"{W}/hnn.pt"], "already holds results"),
    ([*TRAIN, "--out", f"{W}/new.pt", "--resume"], "no training state"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--epochs", "0"], "positive integer"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--epochs", "two"], "positive integer"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--meta-lr", "-1"], "positive number"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--meta-lr", "nan"], "positive number"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--out-mul", "inf"], "out_mul must be"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--seed", "1.5"], "expected an integer >= 0"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--overwrite", "--resume"], "not allowed with"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/missing.toml"], "no config file"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/bad.toml"], "not valid TOML"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/no-optimizer.toml"],
     "no [optimizer] table"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/unknown-table.toml"],
     "unknown tables ['schedul']"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/unknown-type.toml"],
     "'my-optimizer' is not registered"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/bad-option.toml"],
     "takes no option ['integrator']"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/bad-schedule.toml"], "bad [schedule]"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/bool-schedule.toml"],
     "epochs must be a positive integer"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/string-number.toml"],
     "out_mul must be a positive finite number"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/width.toml"], "width=2 is needed"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/negative-width.toml"],
     "cannot be built with the options {'hidden': -3"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/deep.toml"], "nests its tables or arrays"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/with-task.toml", "--task", "quadratic"],
     "given twice"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/scalar.toml", "--optimizer", "hnn"],
     "not allowed with"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/adaptive.toml", "--compile"], "compile"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/readout-flow.toml"],
     "is a flow map, not a read-out"),
    ([*TRAIN, "--out", f"{W}/x.pt", "--config", f"{W}/task-as-optimizer.toml"],
     "is a task, not a learned optimizer"),
    ([*EVAL], "one of the arguments --checkpoint --optimizer is required"),
    ([*EVAL, "--optimizer", "adagrad"], "invalid choice"),
    ([*EVAL, "--checkpoint", f"{W}/missing.pt"], "no checkpoint"),
    ([*EVAL, "--checkpoint", f"{W}/corrupt.pt"], "not a readable checkpoint"),
    ([*EVAL, "--checkpoint", f"{W}/not-a-checkpoint.pt"], "is not a phys-l2o checkpoint"),
    ([*EVAL, "--checkpoint", f"{W}/unregistered.pt"], "'my-lost-potential' is not registered"),
    ([*EVAL, "--checkpoint", f"{W}/mismatch.pt"], "do not fit"),
    ([*EVAL, "--checkpoint", f"{W}/hnn.pt", "--lr", "0.1"], "--lr sets a baseline"),
    ([*EVAL, "--optimizer", "adam", "--activation", "relu"], "applies to the MNIST task only"),
    ([*EVAL, "--optimizer", "adam", "--data-root", W], "applies to the MNIST task only"),
    ([*EVAL, "--optimizer", "adam", "--out", f"{W}/earlier-eval"], "already holds results"),
    ([*EVAL, "--optimizer", "adam", "--out", f"{W}/a-file"], "is a file, not a folder"),
    ([*EVAL, "--optimizer", "adam", "--problems", "0"], "positive integer"),
    ([*EVAL, "--optimizer", "adam", "--steps", "-1"], "positive integer"),
    ([*EVAL, "--optimizer", "adam", "--lr", "0"], "positive number"),
    ([*EVAL, "--optimizer", "adam", "--overwrite"], None),   # fine: nothing to overwrite
    (["claims", "corrected=one-folder"], "expected PROTOCOL=QUAD_DIR,MNIST_DIR"),
    (["claims", f"corrected={W}/empty,{W}/empty"], "no cell records"),
    (["pack", f"{W}/empty", "--into", f"{W}/empty"], "required: --commit"),
    (["pack", "--commit", "abc", "--into", f"{W}/empty", f"{W}/empty"], "no results.json"),
]


@pytest.mark.parametrize("args, message", CLI_CASES,
                         ids=[" ".join(a[:1] + a[-2:]) for a, _ in CLI_CASES])
def test_command_line(args, message, workspace, capsys):
    before = snapshot(workspace)
    argv = [a.replace(W, str(workspace)) for a in args]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    if message is None:
        assert code == 0, err
    else:
        assert code != 0
        assert message in err, err
        assert "Traceback" not in err
    assert snapshot(workspace) == before


def mlp() -> nn.Module:
    return nn.Linear(3, 2)


def unregistered_field() -> PortHamiltonianField:
    class Mine(nn.Module):
        def forward(self, q):
            return q
    return PortHamiltonianField(Mine())


#: (a call, the exception type, a part of its message)
API_CASES = [
    (lambda: HNN(out_mul=-1), ValueError, "out_mul must be a positive"),
    (lambda: HNN(out_mul=math.nan), ValueError, "out_mul must be a positive"),
    (lambda: HNN(out_mul="0.1"), ValueError, "out_mul must be a positive"),
    (lambda: HNN(field=paper_field(1), preprocessing=True), ValueError, "d=1 features"),
    (lambda: HNN(readout="rk4"), ValueError, "is a flow map, not a read-out"),
    (lambda: HNN(field={"type": "nope"}), ValueError, "'nope' is not registered"),
    (lambda: HNN(integrator="rk4"), TypeError, "unexpected keyword argument 'integrator'"),
    (lambda: LSTMOptimizer(hidden=0), ValueError, "hidden must be a positive integer"),
    (lambda: LSTMOptimizer(layers=True), ValueError, "layers must be a positive integer"),
    (lambda: LSTMOptimizer(out_mul=0), ValueError, "out_mul must be"),
    (lambda: build({"type": "adam", "lr": math.inf}), ValueError, "learning rate must be"),
    (lambda: build({"type": "adam", "lr": "0.1"}), ValueError, "learning rate must be"),
    (lambda: build({"type": "sgd", "lr": 0.1, "momentun": 0.9}), ValueError, "momentun"),
    (lambda: build("nope"), SpecError, "not registered"),
    (lambda: build({"no": "type"}), SpecError, "a mapping with a 'type'"),
    (lambda: build({"type": "hnn", "integrator": "rk4"}), SpecError, "takes no option"),
    (lambda: build({"type": "rk4", "horizon": -1}), ValueError, "horizon must be"),
    (lambda: build({"type": "symplectic-euler", "steps": 0}), ValueError, "steps must be"),
    (lambda: build({"type": "dopri5", "rtol": 0}), ValueError, "rtol must be"),
    (lambda: build({"type": "cholesky-inertia", "width": 1, "eps": -1}), ValueError, "eps"),
    (lambda: build({"type": "momentum-dissipation", "gamma": -1}), ValueError, "gamma"),
    (lambda: build({"type": "l2l-preprocessing", "k": 0}), ValueError, "k must be"),
    (lambda: build({"type": "hnn-param", "momentum": 1.0}), ValueError, "momentum must be"),
    (lambda: build({"type": "hnn-param", "flow": {"type": "dopri5", "adjoint": True}}),
     ValueError, "adjoint"),
    (lambda: QuadraticTask(True), ValueError, "dim must be a positive integer"),
    (lambda: QuadraticTask(2.5), ValueError, "dim must be a positive integer"),
    (lambda: Schedule(epochs=True), ValueError, "epochs must be a positive integer"),
    (lambda: Schedule(epochs=1.5), ValueError, "epochs must be a positive integer"),
    (lambda: Schedule(meta_lr="0.1"), ValueError, "meta_lr must be"),
    (lambda: Schedule(meta_lr=math.inf), ValueError, "meta_lr must be"),
    (lambda: meta_train(HNN(), QuadraticTask(), Schedule(epochs=1), seed=1.5, progress=False),
     ValueError, "a seed must be an integer"),
    (lambda: HNN().init_state(torch.zeros(2, 10), [6, 3]), ValueError, "add up to 9"),
    (lambda: HNN().init_state(torch.zeros(2, 10), []), ValueError, "non-empty list"),
    (lambda: HNN().init_state(torch.zeros(10), [10]), ValueError, "(batch, coords)"),
    (lambda: LSTMOptimizer().init_state(torch.zeros(1, 4), ["4"]), ValueError,
     "positive sizes"),
    (lambda: HNN().step(torch.zeros(2, 4), torch.zeros(2, 5),
                        HNN().init_state(torch.zeros(2, 4), [4])),
     ValueError, "grad must have the shape of params"),
    (lambda: build({"type": "adam"}).step(torch.zeros(1, 3), torch.zeros(3),
                                          build({"type": "adam"}).init_state(torch.zeros(1, 3),
                                                                             [3])),
     ValueError, "grad must have the shape"),
    (lambda: LearnedOptim(mlp().parameters(), "nope"), FileNotFoundError, "pretrained name"),
    (lambda: LearnedOptim(mlp().parameters(), HNN(), lr=-1), ValueError, "lr must be a finite"),
    (lambda: LearnedOptim(mlp().parameters(), HNN(), betas=(0.9, 0.99)), TypeError,
     "only 'lr' and 'weight_decay'"),
    (lambda: LearnedOptim(mlp().parameters(), 3), TypeError, "a pretrained name"),
    (lambda: load_checkpoint("no/such/file.pt"), ValueError, "no checkpoint"),
    (lambda: save_checkpoint("never-written.pt", HNN(), bad=object()), SpecError,
     "metadata.bad"),
    (lambda: save_checkpoint("never-written.pt", HNN(field=unregistered_field())), SpecError,
     "which is not registered"),
    (lambda: register("solver", "x"), ValueError, "unknown kind"),
    (lambda: register("flow", "hnn")(type("Again", (), {})), ValueError,
     "already registered"),
    (lambda: MNISTTask(pool="val"), ValueError, "pool must be 'train' or 'test'"),
    (lambda: MNISTTask(activation="swish-ish"), ValueError, "unknown activation"),
    (lambda: MNISTTask(hidden=0), ValueError, "hidden must be a positive integer"),
    (lambda: ModuleTask(mlp, torch.zeros(10, 3), torch.zeros(9)), ValueError,
     "different numbers of examples"),
    (lambda: ModuleTask(mlp, torch.zeros(4, 3), torch.zeros(4), batch_size=8), ValueError,
     "fewer than a minibatch"),
    (lambda: ModuleTask(nn.ReLU, torch.zeros(10, 3), torch.zeros(10), batch_size=2),
     ValueError, "no parameters"),
    (lambda: PortHamiltonianField(None), ValueError, "needs a potential"),
    (lambda: ModuleTask(nn.Linear(3, 2), torch.zeros(10, 3), torch.zeros(10).long(),
                        batch_size=2), TypeError, "a function that builds a fresh model"),
    (lambda: ModuleTask(mlp, [[0.0] * 3] * 10, torch.zeros(10).long(), batch_size=2),
     TypeError, "inputs must be a tensor"),
    (lambda: ModuleTask(mlp, torch.zeros(10, 4), torch.zeros(10).long(), batch_size=2),
     ValueError, "cannot take the data"),
    (lambda: LearnedOptim(mlp().parameters(), HNN(), weight_decay=-1), ValueError,
     "weight_decay must be"),
    (lambda: LearnedOptim([{"params": mlp().parameters(), "momentum": 0.9}], HNN()), TypeError,
     "refused, never ignored"),
    (lambda: LearnedOptim(mlp().parameters(), HNN(), compile="yes"), ValueError,
     "compile must be"),
    (lambda: LearnedOptim(mlp().parameters(), HNN(), horizon=-5), ValueError,
     "horizon must be"),
    (lambda: stepped(LearnedOptim([complex_parameter()], HNN())), RuntimeError,
     "complex parameters"),
    (lambda: LearnedOptim(mlp().parameters(), HNN()).load_state_dict(adam_state()), ValueError,
     "not written by a LearnedOptim"),
]


def complex_parameter() -> nn.Parameter:
    z = nn.Parameter(torch.ones(3, dtype=torch.complex64))
    z.grad = torch.ones_like(z)
    return z


def stepped(opt: torch.optim.Optimizer) -> None:
    opt.step()


def adam_state() -> dict:
    model = mlp()
    adam = torch.optim.Adam(model.parameters())
    model(torch.zeros(2, 3)).sum().backward()
    adam.step()
    return adam.state_dict()


@pytest.mark.parametrize("call, kind, message", API_CASES,
                         ids=[f"api-{i}" for i in range(len(API_CASES))])
def test_api(call, kind, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(kind) as info:
        call()
    assert message in str(info.value)
    assert list(tmp_path.iterdir()) == []       # nothing half-written


def test_the_table_is_large():
    assert len(CLI_CASES) + len(API_CASES) >= 60


def test_an_evaluation_that_cannot_fit_is_refused_before_it_starts(monkeypatch):
    """The bound counts one sampled problem's data and five floats per coordinate, per problem,
    against the memory the machine has; a size that fits passes and returns the bound."""
    import importlib

    from phys_l2o.tasks import QuadraticTask

    module = importlib.import_module("phys_l2o.meta.evaluate")  # the module, not the function

    task = QuadraticTask()  # 10 coordinates; W (10 x 10) and y (10) per problem: 440 bytes
    monkeypatch.setattr(module, "available_memory", lambda: 640_000)
    assert module.check_memory(task, 1000, "x", "y") == 1000 * (440 + 5 * 4 * 10)
    with pytest.raises(ValueError, match=r"1001 problems needs at least 0.0 GB .* 0.0 GB "
                                         r"available: use fewer"):
        module.check_memory(task, 1001, "1001 problems", "use fewer")
    monkeypatch.setattr(module, "available_memory", lambda: None)  # unknown: not refused
    assert module.check_memory(task, 10**9, "x", "y") > 10**11

