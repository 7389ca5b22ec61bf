"""The pieces of a port-Hamiltonian system, one concept per module, and the field that composes them."""

from .control import ControlMLP
from .dissipation import LinearDissipation, MomentumDissipation, PSDDissipation
from .field import PortHamiltonianField
from .inertia import CholeskyInverseInertia, ConstantInverseInertia, InverseInertia
from .potential import (
    Potential,
    PotentialGradientMLP,
    QuadraticPotential,
    ScalarPotentialMLP,
)

__all__ = [
    "CholeskyInverseInertia",
    "ConstantInverseInertia",
    "ControlMLP",
    "InverseInertia",
    "LinearDissipation",
    "MomentumDissipation",
    "PSDDissipation",
    "PortHamiltonianField",
    "Potential",
    "PotentialGradientMLP",
    "QuadraticPotential",
    "ScalarPotentialMLP",
]
