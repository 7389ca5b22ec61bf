"""Specs: every registered name builds, round-trips through spec_of and TOML, and behaves the same;
a user's own piece joins with one decorator; bad specs give clear errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

import phys_l2o
from phys_l2o import (
    HNN,
    KINDS,
    PortHamiltonianField,
    QuadraticTask,
    SpecError,
    build,
    load_checkpoint,
    register,
    registered,
    registry,
    save_checkpoint,
    spec_of,
    to_toml,
)
from phys_l2o.optimizers import advance
from phys_l2o.physics import CholeskyInverseInertia, Potential, PSDDissipation, ScalarPotentialMLP

tomllib = pytest.importorskip("tomllib" if __import__("sys").version_info >= (3, 11) else "tomli")


@register("dissipation", "test-scaled-dissipation")
class ScaledDissipation(nn.Module):
    """A user's piece: ``D = s I`` with a learned scale, registered with one decorator."""

    def __init__(self, width: int, scale: float = 0.5) -> None:
        super().__init__()
        self.width = width
        self.log_scale = nn.Parameter(torch.full((2 * width,), scale).log())

    def forward(self, grad_h):
        return grad_h * self.log_scale.exp()


#: options for names that need some (a required argument, or a small size for speed).
EXAMPLE_OPTIONS = {
    "momentum-dissipation": {"gamma": 0.5},
    "port-hamiltonian": {"potential": "potential-gradient-mlp", "dissipation": "psd-dissipation",
                         "control": {"type": "control-mlp", "hidden": 3}},
    "flow-readout": {"flow": {"type": "dopri5", "rtol": 0.01}},
    "mnist": {"hidden": 4, "steps": 3, "batch_size": 8, "download": False},
    "hnn": {"field": {"type": "port-hamiltonian", "potential": "scalar-potential-mlp",
                      "dissipation": "test-scaled-dissipation"},
            "readout": {"type": "flow-readout", "flow": "rk4"}},
}

ALL_NAMES = [(kind, name) for kind in KINDS for name in registered(kind)]
WIDTH = 2


def example_spec(name: str) -> dict:
    return {"type": name, **EXAMPLE_OPTIONS.get(name, {})}


def make(spec: dict, kind: str, mnist_root) -> object:
    """Build with the context each kind needs (a feature width, a data folder)."""
    torch.manual_seed(0)
    return build(spec, kind, width=WIDTH, data_root=mnist_root)


def behaviour(obj, kind: str) -> list:
    """What ``obj`` computes on fixed inputs, per kind."""
    gen = torch.Generator().manual_seed(1)
    q, q_dot = (torch.randn(3, WIDTH, generator=gen) for _ in range(2))
    if kind in ("inverse-inertia", "control"):
        return [obj(q)]
    if kind == "potential":
        if obj._spec_type == "loss-potential":
            return [obj.gradient(q, q_dot)]       # the step's loss gradient, an argument
        return [obj.gradient(q)]
    if kind == "dissipation":
        return [obj(torch.cat([q, q_dot], -1))]
    if kind == "preprocessing":
        return [obj(q[:, :1])]
    if kind == "field":
        return list(obj(q, q_dot))
    torch.manual_seed(2)
    field = phys_l2o.paper_field(WIDTH)
    if kind in ("readout", "flow"):
        return list(obj(field, q, q_dot))
    if kind in ("optimizer", "baseline"):
        params, grad = torch.randn(2, 6, generator=gen), torch.randn(2, 6, generator=gen)
        state = obj.init_state(params, (4, 2))
        with torch.no_grad():
            for _ in range(2):
                params, state = advance(obj, params, grad, state)
        return [params]
    if kind == "estimator":
        grads = []

        class Recorder:  # a meta-step: its state's generator draws an estimator's noise
            state = SimpleNamespace(generator=torch.Generator().manual_seed(5))

            def gradients(self, g):
                grads.append([x for x in g if x is not None])
                return True

        task = phys_l2o.QuadraticTask(dim=3)
        obj.trajectory(phys_l2o.HNN(), task, task.sample(2, torch.Generator().manual_seed(3)),
                       4, Recorder())
        return [x for gs in grads for x in gs]
    if kind == "task":
        obj = obj.draw(torch.Generator().manual_seed(4))  # a distribution: one of its tasks
        problems = obj.sample(2, torch.Generator().manual_seed(3))
        params = obj.init_params(problems)
        return [params, obj.loss(params, problems, 0)]
    raise AssertionError(f"no behaviour check for kind {kind}")


def test_every_kind_has_entries_and_every_name_is_covered():
    assert all(registered(kind) for kind in KINDS)
    names = {name for _, name in ALL_NAMES}
    assert set(EXAMPLE_OPTIONS) <= names
    assert "test-scaled-dissipation" in registered("dissipation")


@pytest.mark.parametrize("kind, name", ALL_NAMES, ids=[n for _, n in ALL_NAMES])
def test_build_spec_of_roundtrip(kind, name, mnist_test_only_root):
    """build(spec_of(x)) is x again: same class and spec, same weights' shapes, same numbers;
    and the spec survives TOML."""
    original = make(example_spec(name), kind, mnist_test_only_root)
    spec = spec_of(original)
    assert spec["type"] == name
    assert tomllib.loads(to_toml(spec, "x"))["x"] == spec
    rebuilt = make(spec, kind, mnist_test_only_root)
    assert type(rebuilt) is type(original) and spec_of(rebuilt) == spec
    if isinstance(original, nn.Module):
        shapes = {k: v.shape for k, v in original.state_dict().items()}
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
        with torch.no_grad():  # different weights first, so that loading them is what counts
            for weight in rebuilt.parameters():
                weight.add_(0.5)
        rebuilt.load_state_dict(original.state_dict())
    for a, b in zip(behaviour(original, kind), behaviour(rebuilt, kind), strict=True):
        torch.testing.assert_close(a, b)


def test_the_paper_hnn_spec_is_short_and_leaves_out_the_default_field():
    assert spec_of(HNN()) == {"type": "hnn", "preprocessing": False, "out_mul": 0.001,
                              "normalize": True}
    field = spec_of(PortHamiltonianField(ScalarPotentialMLP(1)))
    assert field == {"type": "port-hamiltonian",
                     "potential": {"type": "scalar-potential-mlp", "width": 1, "hidden": 16}}


def composed() -> HNN:
    """The issue's example: scalar potential, PSD dissipation, no control, rk4."""
    torch.manual_seed(0)
    field = PortHamiltonianField(ScalarPotentialMLP(1), CholeskyInverseInertia(1, eps=1e-3),
                                 PSDDissipation(1))
    return HNN(field=field, readout={"type": "flow-readout", "flow": "rk4"})


def steps_of(optimizer, n: int = 3) -> list[torch.Tensor]:
    params, out = torch.zeros(2, 5), []
    state = optimizer.init_state(params, (5,))
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for _ in range(n):
            params, state = advance(optimizer, params, torch.randn(2, 5, generator=gen), state)
            out.append(params)
    return out


def test_a_composition_and_a_user_piece_round_trip_through_a_checkpoint(tmp_path):
    for optimizer in (composed(), build(example_spec("hnn"))):
        with torch.no_grad():
            for weight in optimizer.parameters():
                weight.mul_(1.1)
        save_checkpoint(tmp_path / "opt.pt", optimizer, note="x")
        loaded, meta = load_checkpoint(tmp_path / "opt.pt")
        assert meta == {"note": "x"} and spec_of(loaded) == spec_of(optimizer)
        for a, b in zip(steps_of(optimizer), steps_of(loaded), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_checkpoint_naming_an_unregistered_type_says_how_to_register_it(tmp_path):
    save_checkpoint(tmp_path / "opt.pt", build(example_spec("hnn")))
    payload = torch.load(tmp_path / "opt.pt", weights_only=True)
    payload["spec"]["field"]["dissipation"] = "my-lost-dissipation"
    torch.save(payload, tmp_path / "lost.pt")
    with pytest.raises(phys_l2o.CheckpointError,
                       match=r"'my-lost-dissipation' is not registered.*register\('dissipation'"):
        load_checkpoint(tmp_path / "lost.pt")


def test_save_never_writes_what_load_rejects(tmp_path):
    from pathlib import Path

    import numpy as np

    save_checkpoint(tmp_path / "ok.pt", HNN(), seed=np.int64(3), lr=np.float32(0.5),
                    out=Path("runs/x"), sizes=(1, 2))
    _, meta = load_checkpoint(tmp_path / "ok.pt")
    assert meta == {"seed": 3, "lr": 0.5, "out": "runs/x", "sizes": [1, 2]}
    with pytest.raises(SpecError, match="metadata.bad"):
        save_checkpoint(tmp_path / "bad.pt", HNN(), bad=object())

    class Unregistered(nn.Module):
        def forward(self, grad_h):
            return grad_h

    hnn = HNN(field=PortHamiltonianField(ScalarPotentialMLP(1), dissipation=Unregistered()))
    with pytest.raises(SpecError, match="Unregistered, which is not registered"):
        save_checkpoint(tmp_path / "bad.pt", hnn)
    assert not (tmp_path / "bad.pt").exists()


@pytest.mark.parametrize("spec, message", [
    ({"type": "no-such-thing"}, r"'no-such-thing' is not registered"),
    ({"type": "hnn", "integrator": "rk4"}, r"takes no option \['integrator'\]"),
    ({"type": "hnn", "readout": "dopri5"}, r"'dopri5' is a flow map, not a read-out"),
    ({"type": "hnn", "out_mul": -1}, "out_mul must be a positive"),
    ({"type": "hnn", "preprocessing": True,
      "field": {"type": "port-hamiltonian", "potential": {"type": "scalar-potential-mlp",
                                                          "width": 1}}},
     r"specified with width=1, but it is built where width=2 is needed"),
    ({"typo": "hnn"}, "a spec is a registered name or a mapping with a 'type'"),
    ({"type": "lstm", "hidden": "20"}, "hidden must be a positive integer"),
])
def test_bad_specs_are_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        build(spec)


def test_names_are_unique_across_kinds_and_kinds_are_checked():
    with pytest.raises(ValueError, match="already registered"):
        register("flow", "hnn")(type("Again", (), {"__init__": lambda self: None}))
    with pytest.raises(ValueError, match="unknown kind"):
        register("solver", "x")
    with pytest.raises(SpecError, match="is a task, not a learned optimizer"):
        build("quadratic", "optimizer")


def test_toml_leaves_a_piece_out_as_false():
    spec = {"type": "port-hamiltonian", "potential": "potential-gradient-mlp",
            "dissipation": False, "control": False}
    field = build(spec, width=1)
    assert field.dissipation is None and field.control is None
    assert isinstance(build("quadratic"), QuadraticTask)


def test_a_piece_replaced_after_construction_is_in_the_spec():
    hnn = HNN(field=phys_l2o.paper_field(1))
    hnn.field = PortHamiltonianField(ScalarPotentialMLP(1))
    assert spec_of(hnn)["field"]["potential"]["type"] == "scalar-potential-mlp"


@pytest.fixture
def restore_registry():
    """Registrations made by the test are undone afterwards: the registry is left as found."""
    registered("potential")  # the built-in names first, so that they are kept
    entries = {kind: dict(names) for kind, names in registry._ENTRIES.items()}
    kinds = dict(registry._KIND_OF)
    yield
    for kind, names in registry._ENTRIES.items():
        names.clear()
        names.update(entries[kind])
    registry._KIND_OF.clear()
    registry._KIND_OF.update(kinds)


def define_stiff_potential(stiffness: float) -> type:
    """The same source run again, as a notebook cell is: each call defines a new class object
    of the same module and qualified name and registers it."""

    @register("potential", "test-stiff-potential")
    class StiffPotential(Potential):
        def __init__(self, width: int, scale: float = 1.0) -> None:
            super().__init__()
            self.width = width
            self.scale = scale

        def gradient(self, q: torch.Tensor) -> torch.Tensor:
            return stiffness * self.scale * q

    return StiffPotential


def test_a_class_defined_and_registered_again_replaces_the_old_one(restore_registry):
    first = define_stiff_potential(1.0)
    old = build({"type": "test-stiff-potential", "scale": 2.0}, width=1)
    order = list(registered("potential"))
    second = define_stiff_potential(3.0)
    assert second is not first and second.__qualname__ == first.__qualname__
    assert registry.lookup("test-stiff-potential", "potential") is second
    assert registered("potential")["test-stiff-potential"] is second
    assert list(registered("potential")) == order            # it keeps its place
    assert registry._KIND_OF["test-stiff-potential"] == "potential"
    new = build(spec_of(old), width=1)                        # an old spec builds the new class
    assert type(new) is second and spec_of(new) == spec_of(old)
    torch.testing.assert_close(new.gradient(torch.ones(2, 1)), torch.full((2, 1), 6.0))
    with pytest.raises(AttributeError, match="part of its spec"):
        new.scale = 4.0                                        # the new class is guarded too
    field = build({"type": "port-hamiltonian", "potential": "test-stiff-potential"}, width=1)
    assert type(field.potential) is second
    # registering a class again is a no-op: its constructor is not wrapped twice
    init = second.__init__
    assert register("potential", "test-stiff-potential")(second) is second
    assert second.__init__ is init and registered("potential")["test-stiff-potential"] is second


def test_a_different_class_under_a_taken_name_is_refused(restore_registry):
    stiff = define_stiff_potential(1.0)
    before = {kind: dict(registered(kind)) for kind in KINDS}

    def potential_class(module: str, qualname: str) -> type:
        return type(qualname, (Potential,), {"__module__": module, "__qualname__": qualname})

    refused = [
        ("potential", "test-stiff-potential", potential_class(__name__, "OtherPotential"),
         r"'test-stiff-potential' is already registered \(a potential: "
         r".*StiffPotential\); pick another name"),
        ("potential", "test-stiff-potential",                  # same qualname, another module
         potential_class("my_notebook", stiff.__qualname__), "pick another name"),
        ("potential", "scalar-potential-mlp",                  # a built-in is never replaced
         potential_class("my_notebook", "ScalarPotentialMLP"), "pick another name"),
        ("control", "test-stiff-potential",                    # same class, another kind
         potential_class(stiff.__module__, stiff.__qualname__), "a name keeps its kind"),
        ("potential", "test-stiff-potential-2", stiff,         # one class, one name
         "is registered as 'test-stiff-potential' already"),
    ]
    for kind, name, cls, message in refused:
        with pytest.raises(ValueError, match=message):
            register(kind, name)(cls)
        assert cls is stiff or "_spec_type" not in cls.__dict__  # left as it was
    assert {kind: dict(registered(kind)) for kind in KINDS} == before
    assert set(registry._KIND_OF) == {n for names in before.values() for n in names}
    assert registry.lookup("scalar-potential-mlp") is ScalarPotentialMLP
