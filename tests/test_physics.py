"""The port-Hamiltonian pieces and the field they compose."""

import pytest
import torch
from torch import nn

import phys_l2o
from phys_l2o.physics import (
    CholeskyInverseInertia,
    ConstantInverseInertia,
    Control,
    ControlMLP,
    Dissipation,
    LinearDissipation,
    MomentumDissipation,
    PortHamiltonianField,
    PotentialGradientMLP,
    PSDDissipation,
    QuadraticPotential,
    ScalarPotentialMLP,
)


def set_linear(layer: nn.Linear, weight, bias=None) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))


def paper_field_with_known_weights() -> PortHamiltonianField:
    """d = 1; every weight set by hand."""
    potential = PotentialGradientMLP(1)
    set_linear(potential.net[0], [[2.0]], [-1.0])   # relu(2q - 1)
    set_linear(potential.net[2], [[3.0]], [0.5])    # dV/dq = 3 relu(2q - 1) + 0.5
    control = ControlMLP(1)
    set_linear(control.net[0], [[1.0]], [0.0])      # relu(q)
    set_linear(control.net[2], [[-2.0]], [1.0])     # G = -2 relu(q) + 1
    inertia = CholeskyInverseInertia(1)
    set_linear(inertia.factor, [[0.5]], [7.0])      # M^-1 = 0.25 (bias unused)
    dissipation = LinearDissipation(1)
    set_linear(dissipation.linear, [[1.0, 2.0], [3.0, 4.0]])
    return PortHamiltonianField(potential, inertia, dissipation, control)


def test_field_matches_hand_computation():
    field = paper_field_with_known_weights()
    q, q_dot = torch.tensor([[1.0]]), torch.tensor([[0.5]])
    # dV/dq = 3 * relu(1) + 0.5 = 3.5;  [D_q, D_p] = [[1, 2], [3, 4]] @ [3.5, 0.5] = [4.5, 12.5]
    # G = -2 * 1 + 1 = -1;  dq/dt = 0.5 - 4.5 = -4;  dq_dot/dt = 0.25 * (-3.5 - 12.5 - 1) = -4.25
    dq, dq_dot = field(q, q_dot)
    assert dq.item() == pytest.approx(-4.0)
    assert dq_dot.item() == pytest.approx(-4.25)


def test_field_pieces_can_be_left_out():
    potential = QuadraticPotential(2.0)
    field = PortHamiltonianField(potential)
    q, q_dot = torch.randn(5, 3), torch.randn(5, 3)
    dq, dq_dot = field(q, q_dot)
    torch.testing.assert_close(dq, q_dot)            # no dissipation
    torch.testing.assert_close(dq_dot, -2.0 * q)     # identity inertia, no control


def test_field_accepts_a_users_module_for_any_piece():
    class Drag(nn.Module):
        def forward(self, grad_h):
            return 0.1 * grad_h

    field = PortHamiltonianField(potential=nn.Linear(2, 2), dissipation=Drag())
    dq, dq_dot = field(torch.randn(4, 2), torch.randn(4, 2))
    assert dq.shape == dq_dot.shape == (4, 2)


def builtin(kind: str) -> dict[str, type]:
    """The registered classes of ``kind`` the package itself defines (tests may add their own)."""
    return {name: cls for name, cls in phys_l2o.registered(kind).items()
            if cls.__module__.startswith("phys_l2o.")}


@pytest.mark.parametrize(("kind", "base"), [("dissipation", Dissipation), ("control", Control)])
def test_every_builtin_piece_derives_from_its_base(kind, base):
    classes = builtin(kind)
    assert classes, f"no built-in {kind}"
    for name, cls in classes.items():
        assert issubclass(cls, base), name
        assert cls.compilable is True, name


def test_users_subclasses_of_the_bases_plug_into_the_field():
    class Friction(Dissipation):
        """Friction ``gamma`` on the momentum: ``[D_q, D_p] = [0, gamma q_dot]``."""

        def __init__(self, width: int, gamma: float) -> None:
            super().__init__()
            self.width, self.gamma = width, gamma

        def forward(self, grad_h):
            d_q, d_p = grad_h.chunk(2, dim=-1)
            return torch.cat([torch.zeros_like(d_q), self.gamma * d_p], dim=-1)

    class Spring(Control):
        """A force pulling every coordinate towards 1: ``G(q) = 1 - q``."""

        def forward(self, q):
            return 1.0 - q

    field = PortHamiltonianField(QuadraticPotential(2.0), dissipation=Friction(3, 0.5),
                                 control=Spring())
    assert field.width == 3 and isinstance(field.dissipation, Dissipation)
    q, q_dot = torch.randn(5, 3), torch.randn(5, 3)
    dq, dq_dot = field(q, q_dot)
    torch.testing.assert_close(dq, q_dot)                                 # D_q = 0
    torch.testing.assert_close(dq_dot, -2.0 * q - 0.5 * q_dot + 1.0 - q)  # -dV/dq - D_p + G
    with pytest.raises(ValueError, match="width"):
        PortHamiltonianField(QuadraticPotential(2.0), dissipation=Friction(3, 0.5), width=2)


def test_inverse_inertia_forms():
    pd = CholeskyInverseInertia(3, eps=0.1)
    m_inv = pd.matrix()
    torch.testing.assert_close(m_inv, m_inv.T)
    assert torch.linalg.eigvalsh(m_inv).min() >= 0.1 - 1e-6
    v = torch.randn(4, 3)
    torch.testing.assert_close(pd.inertia(pd(v)), v, atol=1e-4, rtol=1e-4)
    const = ConstantInverseInertia(0.5)
    torch.testing.assert_close(const(v), 0.5 * v)
    with pytest.raises(ValueError, match="positive"):
        ConstantInverseInertia(0.0)


def test_psd_dissipation_is_positive_semidefinite():
    d = PSDDissipation(2)
    assert torch.linalg.eigvalsh(d.matrix()).min() >= -1e-6
    x = torch.randn(100, 4)
    assert ((d(x) * x).sum(-1) >= -1e-5).all()


def test_momentum_dissipation_acts_on_momentum_only():
    x = torch.randn(3, 4)
    out = MomentumDissipation(0.5)(x)
    torch.testing.assert_close(out[:, :2], torch.zeros(3, 2))
    torch.testing.assert_close(out[:, 2:], 0.5 * x[:, 2:])


def test_scalar_potential_gradient_is_autograd_of_energy():
    pot = ScalarPotentialMLP(2)
    q = torch.randn(6, 2, requires_grad=True)
    expected = torch.autograd.grad(pot.energy(q).sum(), q)[0]
    torch.testing.assert_close(pot.gradient(q.detach()), expected)


def test_hamiltonian_needs_a_scalar_potential():
    field = PortHamiltonianField(PotentialGradientMLP(1))
    with pytest.raises(ValueError, match="ScalarPotentialMLP"):
        field.hamiltonian(torch.zeros(1, 1), torch.zeros(1, 1))
    field = PortHamiltonianField(QuadraticPotential(1.0), ConstantInverseInertia(0.5))
    q, q_dot = torch.tensor([[2.0]]), torch.tensor([[1.0]])
    # H = 1/2 q_dot M q_dot + 1/2 q^2 with M = 2
    assert field.hamiltonian(q, q_dot).item() == pytest.approx(1.0 + 2.0)
