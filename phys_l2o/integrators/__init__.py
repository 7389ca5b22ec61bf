"""Integrator backends behind one registry, chosen by name (``make_integrator("rk4", d)``).

``INTEGRATORS`` holds the gradient-state read-outs (the paper's ``euler-readout`` and one
Neural-ODE read-out per flow map); ``FLOWS`` holds the flow maps themselves (torchdiffeq
solvers and symplectic schemes), which the parameter-state optimizer steps with.
"""

from .base import INTEGRATORS, Integrator, make_integrator, register_integrator
from .euler_readout import EulerReadout
from .flows import (
    FLOWS,
    ODE_METHODS,
    Flow,
    Leapfrog,
    SymplecticEuler,
    TorchdiffeqFlow,
    make_flow,
    odeint_field,
    register_flow,
)
from .ode_readout import FlowReadout, flow_readout

__all__ = [
    "FLOWS",
    "INTEGRATORS",
    "ODE_METHODS",
    "EulerReadout",
    "Flow",
    "FlowReadout",
    "Integrator",
    "Leapfrog",
    "SymplecticEuler",
    "TorchdiffeqFlow",
    "flow_readout",
    "make_flow",
    "make_integrator",
    "odeint_field",
    "register_flow",
    "register_integrator",
]
