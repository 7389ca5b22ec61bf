"""The pieces of a port-Hamiltonian system, one concept per module, and the field composing them.

Inverse inertia, potential, dissipation and control (``inertia``, ``potential``,
``dissipation``, ``control``; each with a base class stating its contract: ``InverseInertia``,
``Potential``, ``Dissipation``, ``Control``), the positive scales the diagonal pieces are made of
(``scales``), the compile-friendly small linear maps (``linear``), and
``PortHamiltonianField`` (``field``), with the paper's composition as one registered type,
``PaperField`` (``paper_field``).
"""

from .control import Control, ControlMLP
from .dissipation import (
    DiagonalDissipation,
    Dissipation,
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
from .paper_field import PaperField
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
    "Control",
    "ControlMLP",
    "DiagonalDissipation",
    "DiagonalInverseInertia",
    "Dissipation",
    "FeatureLinear",
    "InverseInertia",
    "LinearDissipation",
    "LossPotential",
    "MomentumDissipation",
    "PSDDissipation",
    "PaperField",
    "PortHamiltonianField",
    "Potential",
    "PotentialGradientMLP",
    "PositiveScale",
    "QuadraticPotential",
    "ScalarPotentialMLP",
    "feature_matmul",
]
