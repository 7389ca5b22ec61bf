"""The pieces of a port-Hamiltonian system, one concept per module, and the field composing them.

Inverse inertia, potential, dissipation and control (``inertia``, ``potential``,
``dissipation``, ``control``), the positive scales the diagonal pieces are made of
(``scales``), the compile-friendly small linear maps (``linear``), and
``PortHamiltonianField`` (``field``).
"""

from .control import ControlMLP
from .dissipation import (
    DiagonalDissipation,
    LinearDissipation,
    MomentumDissipation,
    PSDDissipation,
)
from .field import PortHamiltonianField
from .inertia import (
    CholeskyInverseInertia,
    ConstantInverseInertia,
    DiagonalInverseInertia,
    InverseInertia,
)
from .linear import FeatureLinear, feature_matmul
from .potential import (
    LossPotential,
    Potential,
    PotentialGradientMLP,
    QuadraticPotential,
    ScalarPotentialMLP,
)
from .scales import PositiveScale

__all__ = [
    "CholeskyInverseInertia",
    "ConstantInverseInertia",
    "ControlMLP",
    "DiagonalDissipation",
    "DiagonalInverseInertia",
    "FeatureLinear",
    "InverseInertia",
    "LinearDissipation",
    "LossPotential",
    "MomentumDissipation",
    "PSDDissipation",
    "PortHamiltonianField",
    "Potential",
    "PotentialGradientMLP",
    "PositiveScale",
    "QuadraticPotential",
    "ScalarPotentialMLP",
    "feature_matmul",
]
