"""Sweep files that compose: includes, variant defaults, bases and the paper-field shorthand.

Every sweep file of the repository must expand to exactly the data it held when written out
(``tests/data/sweeps/<name>.json``): a run folder is keyed on that data.
"""

import json
from pathlib import Path

import pytest
import torch

from phys_l2o import build, spec_of
from phys_l2o.experiments.compose import ComposeError, expand, merge
from phys_l2o.optimizers import paper_field
from phys_l2o.physics import PaperField, PortHamiltonianField

ROOT = Path(__file__).resolve().parents[1]
SAVED = sorted((ROOT / "tests" / "data" / "sweeps").glob("*.json"))
SWEEP_DIRS = (ROOT / "ablations", ROOT / "phys_l2o" / "sweeps")


def sweep_file(saved: Path) -> Path:
    (path,) = [d / f"{saved.stem}.toml" for d in SWEEP_DIRS
               if (d / f"{saved.stem}.toml").is_file()]
    return path


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_every_sweep_file_has_its_written_out_data():
    files = sorted(p.stem for d in SWEEP_DIRS for p in d.glob("*.toml"))
    assert files == [p.stem for p in SAVED]


@pytest.mark.parametrize("saved", SAVED, ids=lambda p: p.stem)
def test_a_sweep_file_expands_to_its_written_out_data(saved):
    data = expand(sweep_file(saved))
    want = json.loads(saved.read_text())
    # the same keys, values and number types (1.0 is not 1), and the same order of
    # budgets, targets and variants (the order of the report's tables and columns)
    assert json.dumps(data, sort_keys=True) == json.dumps(want, sort_keys=True)
    assert list(data["budgets"]) == list(want["budgets"])
    assert list(data["targets"]) == list(want["targets"])
    assert [v["name"] for v in data["variants"]] == [v["name"] for v in want["variants"]]


def test_later_includes_win_and_the_including_file_wins_over_all(tmp_path):
    write(tmp_path, "a.toml", 'title = "a"\nseeds = [1, 2]\n[x]\np = 1\nq = 1\nr = 1\n'
                              '[opt]\ntype = "hnn"\nout_mul = 0.1\nnormalize = true\n')
    write(tmp_path, "b.toml", 'title = "b"\n[x]\nq = 2\nr = 2\n'
                              '[opt]\ntype = "lstm"\nout_mul = 1.0\n')
    main = write(tmp_path, "main.toml", 'include = ["a.toml", "b.toml"]\nseeds = [3]\n'
                                        '[x]\nr = 3\n')
    data = expand(main)
    assert data == {"title": "b", "seeds": [3], "x": {"p": 1, "q": 2, "r": 3},
                    # a table naming another type replaces the table: no hnn option left
                    "opt": {"type": "lstm", "out_mul": 1.0}}


def test_merge_patches_specs_of_one_type_and_leaves_its_inputs_alone():
    under = {"optimizer": {"type": "hnn", "field": {"type": "paper-field", "control": False}}}
    over = {"optimizer": {"field": {"dissipation": False}, "out_mul": 0.01}}
    assert merge(under, over) == {"optimizer": {
        "type": "hnn", "field": {"type": "paper-field", "control": False, "dissipation": False},
        "out_mul": 0.01}}
    assert under == {"optimizer": {"type": "hnn",
                                   "field": {"type": "paper-field", "control": False}}}


def test_includes_nest_with_paths_relative_to_the_including_file(tmp_path):
    write(tmp_path, "shared/budgets.toml", "[budgets.tiny]\nepochs = 1\n")
    write(tmp_path, "shared/task.toml", 'include = ["budgets.toml"]\n'
                                        'train = { type = "quadratic" }\n')
    main = write(tmp_path, "sweeps/main.toml", 'include = ["../shared/task.toml"]\n'
                                               'name = "main"\n')
    assert expand(main) == {"budgets": {"tiny": {"epochs": 1}}, "train": {"type": "quadratic"},
                            "name": "main"}


def test_a_file_outside_the_repository_includes_the_package_files(tmp_path):
    main = write(tmp_path, "mine.toml", 'include = ["package:shared/quadratic.toml"]\n'
                                        'targets.quadratic.baselines.sgd.lr = 0.05\n')
    data = expand(main)
    assert data["train"] == {"type": "quadratic"}
    assert data["targets"]["quadratic"]["baselines"]["sgd"] == {"type": "sgd", "lr": 0.05}
    assert data["targets"]["quadratic"]["baselines"]["adam"] == {"type": "adam", "lr": 0.1}
    paper = expand(write(tmp_path, "paper.toml", 'include = ["package:paper-mnist.toml"]\n'))
    assert paper == expand(ROOT / "phys_l2o" / "sweeps" / "paper-mnist.toml")


def test_an_include_cycle_is_refused_naming_the_chain(tmp_path):
    write(tmp_path, "a.toml", 'include = ["b.toml"]\n')
    write(tmp_path, "b.toml", 'include = ["a.toml"]\n')
    main = write(tmp_path, "main.toml", 'include = ["a.toml"]\n')
    with pytest.raises(ComposeError, match="cycle") as error:
        expand(main)
    assert "main.toml -> " in str(error.value) and "a.toml -> " in str(error.value)
    assert "b.toml" in str(error.value)
    with pytest.raises(ComposeError, match="cycle"):
        expand(write(tmp_path, "self.toml", 'include = ["self.toml"]\n'))


def test_a_missing_include_is_refused_naming_the_file_and_who_included_it(tmp_path):
    write(tmp_path, "a.toml", 'include = ["nowhere.toml"]\n')
    main = write(tmp_path, "main.toml", 'include = ["a.toml"]\n')
    with pytest.raises(ComposeError, match="nowhere.toml") as error:
        expand(main)
    assert "main.toml -> " in str(error.value) and "a.toml" in str(error.value)
    with pytest.raises(FileNotFoundError):
        expand(tmp_path / "absent.toml")
    with pytest.raises(ComposeError, match="array of file names"):
        expand(write(tmp_path, "bad.toml", 'include = "a.toml"\n'))


def test_an_invalid_include_names_the_chain(tmp_path):
    write(tmp_path, "broken.toml", "x = \n")
    main = write(tmp_path, "main.toml", 'include = ["broken.toml"]\n')
    with pytest.raises(ComposeError, match="not valid TOML") as error:
        expand(main)
    assert "main.toml -> " in str(error.value)


VARIANTS = """
[variant_defaults]
unroll = 15
meta_lr = 0.01
optimizer = { out_mul = 0.001 }

[[variants]]
name = "hnn"
optimizer = { type = "hnn", normalize = true }

[[variants]]
name = "lstm"
optimizer = { type = "lstm", out_mul = 1.0 }
unroll = 20

[[variants]]
name = "no control"
base = "hnn"
optimizer.field = { type = "paper-field", control = false }
meta_lr = 0.003

[[variants]]
name = "lstm, short"
base = "lstm"
epochs = 2

[[variants]]
name = "conservative"
base = "no control"
optimizer.field.dissipation = false
"""


def test_variant_defaults_and_bases(tmp_path):
    data = expand(write(tmp_path, "v.toml", VARIANTS))
    assert "variant_defaults" not in data
    hnn, lstm, no_control, short, conservative = data["variants"]
    assert hnn == {"name": "hnn", "optimizer": {"type": "hnn", "out_mul": 0.001,
                                                 "normalize": True},
                   "unroll": 15, "meta_lr": 0.01}
    # a key the variant sets wins over the defaults
    assert lstm == {"name": "lstm", "optimizer": {"type": "lstm", "out_mul": 1.0},
                    "unroll": 20, "meta_lr": 0.01}
    # the base's resolved table, patched; its own name; no `base` left
    assert no_control["name"] == "no control" and "base" not in no_control
    assert no_control["meta_lr"] == 0.003 and no_control["unroll"] == 15
    assert no_control["optimizer"]["normalize"] is True
    assert no_control["optimizer"]["field"]["control"] is False
    # the base's values win over the defaults (unroll 20, not 15)
    assert short == {**lstm, "name": "lstm, short", "epochs": 2}
    # a base of a base; tables patched key by key at every depth
    field = conservative["optimizer"]["field"]
    assert field["control"] is False and field["dissipation"] is False
    assert conservative["meta_lr"] == 0.003


def test_an_unknown_or_circular_base_is_refused(tmp_path):
    unknown = 'train = 1\n[[variants]]\nname = "a"\n[[variants]]\nname = "b"\nbase = "c"\n'
    with pytest.raises(ComposeError, match=r"base 'c' names none of \['a', 'b'\]"):
        expand(write(tmp_path, "u.toml", unknown))
    circular = ('[[variants]]\nname = "a"\nbase = "b"\n'
                '[[variants]]\nname = "b"\nbase = "a"\n')
    with pytest.raises(ComposeError, match="leads back"):
        expand(write(tmp_path, "c.toml", circular))
    with pytest.raises(ComposeError, match="cannot set a variant's name or base"):
        expand(write(tmp_path, "d.toml", '[variant_defaults]\nbase = "a"\n'))
    with pytest.raises(ComposeError, match="base must be a name"):
        expand(write(tmp_path, "n.toml", '[[variants]]\nname = "a"\nbase = 1\n'))


def test_a_target_based_on_another(tmp_path):
    text = ('[targets.sigmoid]\ntask = { type = "mnist", activation = "sigmoid" }\n'
            'baselines.sgd = { type = "sgd", lr = 1.0 }\n'
            'baselines.adam = { type = "adam", lr = 0.03 }\n'
            '[targets.tanh]\nbase = "sigmoid"\ntask.activation = "tanh"\n'
            'baselines.sgd.lr = 0.5\n')
    targets = expand(write(tmp_path, "t.toml", text))["targets"]
    assert targets["tanh"] == {"task": {"type": "mnist", "activation": "tanh"},
                               "baselines": {"sgd": {"type": "sgd", "lr": 0.5},
                                             "adam": {"type": "adam", "lr": 0.03}}}
    assert targets["sigmoid"]["task"]["activation"] == "sigmoid"


def test_presets_are_shared_starting_points_for_variants_and_targets(tmp_path):
    write(tmp_path, "shared.toml",
          '[presets.paper-hnn]\noptimizer = { type = "hnn", out_mul = 0.001 }\nunroll = 15\n'
          '[presets.net]\ntask = { type = "quadratic" }\n'
          'baselines.sgd = { type = "sgd", lr = 0.01 }\n')
    text = ('include = ["shared.toml"]\n[variant_defaults]\nmeta_lr = 0.01\nunroll = 10\n'
            '[[variants]]\nname = "hnn"\npreset = "paper-hnn"\n'
            '[[variants]]\nname = "short"\npreset = "paper-hnn"\nunroll = 5\n'
            '[[variants]]\nname = "no control"\nbase = "hnn"\n'
            'optimizer.field = { type = "paper-field", control = false }\n'
            '[targets.a]\npreset = "net"\nbaselines.sgd.lr = 0.03\n')
    data = expand(write(tmp_path, "p.toml", text))
    assert "presets" not in data
    hnn, short, no_control = data["variants"]
    # defaults, then the preset, then the variant's own keys
    assert hnn == {"name": "hnn", "optimizer": {"type": "hnn", "out_mul": 0.001},
                   "unroll": 15, "meta_lr": 0.01}
    assert short["unroll"] == 5 and no_control["optimizer"]["out_mul"] == 0.001
    assert data["targets"]["a"] == {"task": {"type": "quadratic"},
                                    "baselines": {"sgd": {"type": "sgd", "lr": 0.03}}}
    with pytest.raises(ComposeError, match=r"preset 'nope' names none of the presets"):
        expand(write(tmp_path, "u.toml", 'include = ["shared.toml"]\n'
                                         '[[variants]]\nname = "a"\npreset = "nope"\n'))
    with pytest.raises(ComposeError, match="a base or a preset, not both"):
        expand(write(tmp_path, "b.toml", 'include = ["shared.toml"]\n[[variants]]\n'
                                         'name = "a"\npreset = "paper-hnn"\n[[variants]]\n'
                                         'name = "b"\nbase = "a"\npreset = "paper-hnn"\n'))


def test_no_sweep_file_writes_out_the_papers_optimizers_or_baselines():
    """The paper's optimizers and baselines live in the package's shared files only: a sweep
    file of the paper's experiments or their ablations starts from them (``preset``), it never
    copies them; the generalization sweep takes the paper's LSTM by its preset too."""
    from phys_l2o.config import load_toml

    root = Path(__file__).resolve().parent.parent
    general = load_toml(root / "phys_l2o/sweeps/generalization.toml")
    assert [v.get("preset") for v in general["variants"] if v["name"] == "lstm"] == ["mnist-lstm"]
    files = [*root.glob("ablations/*.toml"), *root.glob("phys_l2o/sweeps/paper-*.toml")]
    assert len(files) == 7
    for path in files:
        raw = load_toml(path)
        for label, target in raw.get("targets", {}).items():
            assert "baselines" not in target, (path, label)
        for variant in raw.get("variants", []):
            optimizer = variant.get("optimizer", {})
            assert optimizer.get("type") not in ("hnn", "lstm"), (path, variant["name"])


def test_the_paper_field_shorthand_expands_to_the_explicit_spec(tmp_path):
    text = ('[[variants]]\nname = "a"\n'
            'optimizer = { type = "hnn", field = { type = "paper-field", control = false } }\n')
    (variant,) = expand(write(tmp_path, "p.toml", text))["variants"]
    assert variant["optimizer"]["field"] == {
        "type": "port-hamiltonian", "potential": "potential-gradient-mlp",
        "inverse_inertia": "cholesky-inertia", "dissipation": "linear-dissipation",
        "control": False}
    bad = text.replace("control = false", "friction = 1")
    with pytest.raises(ComposeError, match="friction"):
        expand(write(tmp_path, "bad.toml", bad))


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("width", [1, 2])
def test_paper_field_builds_the_papers_field(width):
    torch.manual_seed(0)
    want = paper_field(width)
    torch.manual_seed(0)
    got = build({"type": "paper-field"}, width=width)
    assert isinstance(got, PaperField) and isinstance(got, PortHamiltonianField)
    assert same_weights(got, want)
    q, q_dot = torch.randn(3, 4, width), torch.randn(3, 4, width)
    for a, b in zip(got(q, q_dot), want(q, q_dot)):
        torch.testing.assert_close(a, b)


def test_paper_field_pieces_are_overridable_and_round_trip():
    torch.manual_seed(1)
    want = paper_field(2, control=None)
    torch.manual_seed(1)
    got = build({"type": "paper-field", "control": False}, width=2)
    assert got.control is None and same_weights(got, want)
    spec = spec_of(got)
    assert spec == {"type": "paper-field", "control": False, "width": 2}
    assert {k: v.shape for k, v in build(spec).state_dict().items()} == \
        {k: v.shape for k, v in got.state_dict().items()}
    scalar = build({"type": "paper-field", "potential": "scalar-potential-mlp"}, width=2)
    assert type(scalar.potential).__name__ == "ScalarPotentialMLP"
    assert spec_of(scalar)["potential"] == "scalar-potential-mlp"
    hnn = build({"type": "hnn", "preprocessing": True,
                 "field": {"type": "paper-field", "dissipation": False, "control": False}})
    assert hnn.field.dissipation is None and hnn.field.control is None
    assert hnn.field.inverse_inertia is not None
