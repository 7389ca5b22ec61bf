"""Read-outs and flow maps, registered by name (``phys_l2o.registry``).

Read-outs (kind ``readout``) turn a field and a gradient-state ``(q, q_dot)`` into an update:
the paper's ``euler-readout`` (the default) and ``flow-readout``, which integrates the field
with a flow map first. Flow maps (kind ``flow``) advance ``(q, q_dot)`` over a horizon: the
torchdiffeq solvers and the symplectic schemes; the parameter-state optimizer steps with
them too.
"""

from .base import CallCount, Readout, count_calls
from .euler_readout import EulerReadout
from .flows import (
    ODE_METHODS,
    Flow,
    Leapfrog,
    SymplecticEuler,
    TorchdiffeqFlow,
    odeint_field,
)
from .ode_readout import FlowReadout

__all__ = [
    "CallCount",
    "ODE_METHODS",
    "EulerReadout",
    "Flow",
    "FlowReadout",
    "Leapfrog",
    "Readout",
    "SymplecticEuler",
    "TorchdiffeqFlow",
    "count_calls",
    "odeint_field",
]
