"""Specs cannot lie: once built, a registered object's options are fixed, so nothing set
afterwards is lost on saving; a piece replaced by a registered module travels with it."""

from __future__ import annotations

import copy
import inspect
import pickle

import pytest
import torch
from torch import nn

import phys_l2o
from phys_l2o import (
    HNN,
    KINDS,
    PortHamiltonianField,
    build,
    load_checkpoint,
    register,
    registered,
    save_checkpoint,
    spec_of,
)
from phys_l2o.physics import LinearDissipation, PSDDissipation, ScalarPotentialMLP
from phys_l2o.registry import copy_with, is_registered


@register("dissipation", "test-scaled-linear-dissipation")
class ScaledLinearDissipation(LinearDissipation):
    """A registered subclass of a registered class that assigns after its base's constructor."""

    def __init__(self, width: int, scale: float = 2.0) -> None:
        super().__init__(width)
        self.scale = scale

    def forward(self, grad_h: torch.Tensor) -> torch.Tensor:
        return self.scale * super().forward(grad_h)


class UnregisteredDissipation(nn.Module):
    def forward(self, grad_h: torch.Tensor) -> torch.Tensor:
        return grad_h


ALL_NAMES = [(kind, name) for kind in KINDS for name in registered(kind)]
#: what a name needs to be built (a required option; small sizes and no download for MNIST).
NEEDS = {"momentum-dissipation": {"gamma": 0.5},
         "port-hamiltonian": {"potential": "potential-gradient-mlp",
                              "dissipation": "psd-dissipation", "control": "control-mlp"},
         "mnist": {"hidden": 4, "steps": 3, "batch_size": 8, "download": False}}
WIDTH = 2
SCALARS = (bool, int, float, str)


def make(spec: dict, kind: str | None, root) -> object:
    torch.manual_seed(0)
    return build(spec, kind, width=WIDTH, data_root=root)


def changed(value: bool | int | float | str) -> bool | int | float | str:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return 2 * value + 1
    return value + "-changed"


def registered_parts(obj: object) -> dict[str, object]:
    """``obj`` and its registered sub-modules, by their names in ``named_modules``."""
    if not isinstance(obj, nn.Module):
        return {"": obj}
    return {name: m for name, m in obj.named_modules() if is_registered(m)}


def scalar_options(obj: object) -> dict[str, bool | int | float | str]:
    """The scalar options of ``obj``: its spec's, and the scalar defaults a spec leaves out."""
    cls = type(obj)
    options = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
               if isinstance(p.default, SCALARS) and name not in cls._spec_context}
    options.update({k: v for k, v in spec_of(obj).items()
                    if k != "type" and isinstance(v, SCALARS)})
    return options


def rebuilt(obj: object, kind: str, root, tmp_path) -> object:
    """``obj`` saved and loaded: through a checkpoint for a learned optimizer, else its spec."""
    if kind == "optimizer":
        save_checkpoint(tmp_path / "opt.pt", obj)
        return load_checkpoint(tmp_path / "opt.pt")[0]
    return make(spec_of(obj), kind, root)


@pytest.mark.parametrize("kind, name", ALL_NAMES, ids=[n for _, n in ALL_NAMES])
def test_no_option_changed_after_construction_is_lost(kind, name, mnist_test_only_root,
                                                      tmp_path):
    """Every scalar option of every registered object and of its registered pieces: assigning
    a changed value is refused with a message that says how to build a changed one, or the
    change survives saving and loading. Nothing is lost silently."""
    obj = make({"type": name, **NEEDS.get(name, {})}, kind, mnist_test_only_root)
    tried = 0
    for part in registered_parts(obj).values():
        for key, value in scalar_options(part).items():
            tried += 1
            try:
                setattr(part, key, changed(value))
            except AttributeError as error:
                assert f"{type(part).__qualname__}.{key} is part of its spec" in str(error)
                assert "phys_l2o.build({**phys_l2o.spec_of(" in str(error)
                assert f"{key!r}: {changed(value)!r}" in str(error)
            else:  # allowed: then its spec says so
                assert spec_of(part)[key] == changed(value)
    assert tried > 0 or not scalar_options(obj)
    again = rebuilt(obj, kind, mnist_test_only_root, tmp_path)
    assert spec_of(again) == spec_of(obj)
    parts, parts_again = registered_parts(obj), registered_parts(again)
    assert parts.keys() == parts_again.keys()
    for where, part in parts.items():
        for key in scalar_options(part):
            value = getattr(part, key, None)
            if isinstance(value, SCALARS):
                assert getattr(parts_again[where], key) == value, f"{name}: {where}.{key}"


def test_the_message_says_what_to_build_instead():
    opt = HNN()
    with pytest.raises(AttributeError) as error:
        opt.out_mul = 0.5
    assert str(error.value) == (
        "HNN.out_mul is part of its spec and cannot change after construction; build a changed "
        "one: phys_l2o.build({**phys_l2o.spec_of(opt), 'out_mul': 0.5})")
    changed_opt = phys_l2o.build({**phys_l2o.spec_of(opt), "out_mul": 0.5})
    assert changed_opt.out_mul == 0.5 and opt.out_mul == 0.001
    with pytest.raises(AttributeError, match=r"spec_of\(task\), 'dim': 3\}\)"):
        build("quadratic").dim = 3
    with pytest.raises(AttributeError, match=r"'lr': 0.5\}\)"):
        build("adam").lr = 0.5


def steps_of(optimizer, n: int = 3) -> list[torch.Tensor]:
    params, out = torch.zeros(2, 5), []
    state = optimizer.init_state(params, (5,))
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for _ in range(n):
            params, state = optimizer.step(params, torch.randn(2, 5, generator=gen), state)
            out.append(params)
    return out


def round_trips(optimizer, tmp_path) -> HNN:
    save_checkpoint(tmp_path / "opt.pt", optimizer)
    loaded, _ = load_checkpoint(tmp_path / "opt.pt")
    assert spec_of(loaded) == spec_of(optimizer)
    for a, b in zip(steps_of(optimizer), steps_of(loaded), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    return loaded


def test_a_piece_replaced_by_a_registered_module_round_trips(tmp_path):
    torch.manual_seed(0)
    hnn = HNN()  # the paper's field, left out of the spec
    hnn.field = PortHamiltonianField(ScalarPotentialMLP(1))
    loaded = round_trips(hnn, tmp_path)
    assert isinstance(loaded.field.potential, ScalarPotentialMLP)

    named = HNN(readout="euler-readout")  # a piece given by name, then replaced
    named.readout = build({"type": "flow-readout", "flow": "rk4"}, width=1)
    assert round_trips(named, tmp_path).readout._spec_type == "flow-readout"


def test_a_piece_replaced_deep_inside_a_default_piece_round_trips(tmp_path):
    torch.manual_seed(0)
    hnn = HNN()
    hnn.field.dissipation = PSDDissipation(1)
    assert spec_of(hnn)["field"]["dissipation"] == {"type": "psd-dissipation", "width": 1}
    assert isinstance(round_trips(hnn, tmp_path).field.dissipation, PSDDissipation)


def test_a_replacement_the_spec_cannot_follow_is_refused():
    hnn = HNN()
    field = hnn.field
    with pytest.raises(AttributeError, match="UnregisteredDissipation .*would be lost"):
        hnn.field.dissipation = UnregisteredDissipation()
    with pytest.raises(AttributeError, match="only by a module of a registered class"):
        hnn.field = nn.Identity()
    with pytest.raises(AttributeError, match="holds a read-out, not a dissipation"):
        hnn.readout = PSDDissipation(1)
    with pytest.raises(AttributeError, match="HNN.preprocess holds a piece that its spec names "
                                             "otherwise"):
        hnn.preprocess = build("l2l-preprocessing")
    assert hnn.field is field and spec_of(hnn) == spec_of(HNN())


def test_construction_may_assign_in_subclasses_registered_or_not():
    piece = ScaledLinearDissipation(1, scale=3.0)
    assert spec_of(piece) == {"type": "test-scaled-linear-dissipation", "width": 1, "scale": 3.0}
    with pytest.raises(AttributeError, match="ScaledLinearDissipation.scale is part of its spec"):
        piece.scale = 4.0

    class Slower(HNN):  # not registered: no spec, so nothing to keep true
        def __init__(self) -> None:
            super().__init__(out_mul=0.01)
            self.out_mul = 0.001

    slower = Slower()
    slower.out_mul = 0.5
    with pytest.raises(phys_l2o.SpecError, match="Slower is not registered"):
        spec_of(slower)


@pytest.mark.parametrize("kind, name", ALL_NAMES, ids=[n for _, n in ALL_NAMES])
def test_copies_and_module_machinery_keep_working(kind, name, mnist_test_only_root):
    obj = make({"type": name, **NEEDS.get(name, {})}, kind, mnist_test_only_root)
    spec = spec_of(obj)
    for other in (copy.deepcopy(obj), pickle.loads(pickle.dumps(obj))):
        assert spec_of(other) == spec
        for key, value in scalar_options(other).items():  # and the copies keep the rule
            with pytest.raises(AttributeError, match="part of its spec"):
                setattr(other, key, changed(value))
    if isinstance(obj, nn.Module):
        state = copy.deepcopy(obj.state_dict())
        obj.to(torch.float64).eval().train().requires_grad_(False)
        obj.to(torch.float32).load_state_dict(state, assign=True)
        obj.load_state_dict(state)
        assert spec_of(obj) == spec


def test_copy_with_changes_attribute_and_spec_alike():
    task = build({"type": "quadratic", "dim": 3})
    other = copy_with(task, dim=4)
    assert other.dim == 4 and spec_of(other)["dim"] == 4
    assert task.dim == 3 and spec_of(task)["dim"] == 3
    with pytest.raises(phys_l2o.SpecError, match="no spec'd option"):
        copy_with(task, size=4)
    with pytest.raises(TypeError, match="is a module"):
        copy_with(HNN(), out_mul=0.5)
