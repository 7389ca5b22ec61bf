"""Integrator backends behind one registry, chosen by name (``make_integrator("euler-readout", d)``)."""

from .base import INTEGRATORS, Integrator, make_integrator, register_integrator
from .euler_readout import EulerReadout

__all__ = ["INTEGRATORS", "EulerReadout", "Integrator", "make_integrator", "register_integrator"]
