"""The parameter-state port-Hamiltonian optimizer: the parameters themselves are the coordinate.

The other idea of the paper's Discussion (section IV), after Massaroli et al. (2019): every
parameter is the coordinate ``q = theta`` of a port-Hamiltonian system whose potential is
the loss; its velocity ``q_dot = M^{-1} p`` is the optimizer's state (zeros at step 0), and
one optimizer step advances the system by a registered flow map (kind ``flow``,
``symplectic-euler`` by default). Classical SGD with momentum is one such system with fixed
pieces (``momentum_sgd``); the learned optimizer starts there and learns its pieces.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn

from ..integrators import Flow
from ..physics import (
    ConstantInverseInertia,
    ControlMLP,
    DiagonalDissipation,
    DiagonalInverseInertia,
    LossPotential,
    MomentumDissipation,
    PortHamiltonianField,
)
from ..registry import build_part, register
from .base import LearnedOptimizer, check_init, check_step


def parameter_field(lr: float = 0.01, momentum: float = 0.9, *, nesterov: bool = False,
                    learned: bool = True, correction_hidden: int = 0,
                    control: bool = False) -> PortHamiltonianField:
    """A field on ``d = 1`` feature per parameter that starts as SGD with momentum.

    Stepped by symplectic Euler with ``h = 1``, its initial pieces are those of SGD with
    momentum ``mu`` (of Nesterov's momentum with ``nesterov``):

    | piece | momentum | Nesterov |
    |---|---|---|
    | ``M^{-1}`` | ``lr`` | ``lr * mu`` |
    | ``D`` | ``diag(0, (1 - mu) / lr)`` | ``diag(lr, (1 - mu) / (lr * mu))`` |

    plus ``dV/dq = g + c(g)`` (``LossPotential``) and, optionally, a control ``G(q)``.

    Args:
        lr: learning rate, ``> 0``.
        momentum: ``mu`` in ``[0, 1)`` (``(0, 1)`` with ``nesterov``).
        nesterov: start at Nesterov's momentum (``D_q = lr``: a direct gradient step).
        learned: learn the inverse inertia and the non-zero dissipation entries (in log space,
            so ``M^{-1} > 0`` and ``D >= 0`` stay true); else they are fixed and the field is
            exactly the classical method (``ConstantInverseInertia``, ``MomentumDissipation``).
        correction_hidden: hidden units of a learned correction ``c``, an MLP
            ``1 -> hidden -> 1`` of the gradient starting at zero; ``0`` for none.
        control: add a learned control ``G(q)`` (a ``ControlMLP`` of the parameter,
            e.g. a learned weight decay) starting at zero.
    """
    if not lr > 0:
        raise ValueError(f"the learning rate must be positive, got {lr}")
    if not (0.0 < momentum < 1.0 if nesterov else 0.0 <= momentum < 1.0):
        raise ValueError(f"momentum must be in {'(0, 1)' if nesterov else '[0, 1)'}, "
                         f"got {momentum}")
    potential = LossPotential(correction_hidden)
    if nesterov:
        inverse_inertia, d_q, d_p = lr * momentum, lr, (1.0 - momentum) / (lr * momentum)
    else:
        inverse_inertia, d_q, d_p = lr, 0.0, (1.0 - momentum) / lr
    if learned:
        inertia: nn.Module = DiagonalInverseInertia(1, inverse_inertia)
        dissipation: nn.Module = DiagonalDissipation(1, q=d_q, p=d_p)
    else:
        inertia = ConstantInverseInertia(inverse_inertia)
        dissipation = (DiagonalDissipation(1, q=d_q, p=d_p, learn=False) if nesterov
                       else MomentumDissipation(d_p))
    force = None
    if control:
        force = ControlMLP(1)
        with torch.no_grad():  # start as no force
            force.net[-1].weight.zero_()
            force.net[-1].bias.zero_()
    return PortHamiltonianField(potential, inertia, dissipation, force)


class ParameterState(NamedTuple):
    """The parameter-state optimizer's velocity ``q_dot`` ``(batch, coords)``."""

    q_dot: Tensor


@register("optimizer", "hnn-param")
class ParameterStateOptimizer(LearnedOptimizer):
    """Each parameter is the coordinate of a port-Hamiltonian system with the loss as potential.

    For every coordinate (``d = 1``), with ``g_t = grad F(theta_t)`` and a flow map ``Phi_h``
    over one step of length ``h`` (``horizon``, default 1):

        dV/dq(q)  = g_t + c(g_t)                     held fixed for every q on the step
        dq/dt     = q_dot - D_q                      (the field, see PortHamiltonianField)
        dq_dot/dt = M^{-1} (-dV/dq - D_p + G(q))
        (theta_{t+1}, q_dot_{t+1}) = Phi_h(theta_t, q_dot_t)

    The default ``symplectic-euler`` step (``h = 1``) is:

        q_dot_{t+1} = q_dot_t + M^{-1} (-g_t - D_p(g_t, q_dot_t) + G(theta_t))
        theta_{t+1} = theta_t + q_dot_{t+1} - D_q(g_t, q_dot_{t+1})

    which with the fixed pieces of ``momentum_sgd`` is ``torch.optim.SGD`` with momentum.

    What a full ODE solve means here: the loss gradient is known only at ``theta_t`` (one
    gradient per optimizer step), so over the step it is **held fixed**: the potential is the
    loss linearised at ``theta_t``. A solver such as ``flow="dopri5"`` integrates this
    frozen-gradient system to its tolerance, not the flow on the true loss: it is accurate
    on a model that is itself only first-order in the step (with constant inertia and
    dissipation the frozen system is linear with constant forcing). Symplectic Euler needs
    the gradient only where it is known, at the start of its kick, which makes it the natural
    scheme; leapfrog's second half kick sees the same frozen gradient. Sub-steps
    (``flow={"type": "symplectic-euler", "steps": n}``) refine the frozen-gradient dynamics,
    not the loss. The flow integrates ``field(q, q_dot, grad=g_t)``: the gradient is an
    argument of the field, not state bound into it. The adjoint is refused (its backward
    solve would need ``g_t``'s graph). The update is ``theta_{t+1} - theta_t``, applied at
    scale 1 (``advance``).

    Shapes: ``params``, ``grad`` and the state ``q_dot`` are ``(batch, coords)``; the field
    sees ``(batch, coords, 1)``.

    Args:
        field: a field on ``d = 1`` whose potential is a ``LossPotential`` (a module or a
            spec); ``None`` builds ``parameter_field`` from the keyword arguments below (only
            then are they used).
        lr: see ``parameter_field``.
        momentum: see ``parameter_field``.
        nesterov: see ``parameter_field``.
        learned: see ``parameter_field``.
        correction_hidden: see ``parameter_field``.
        control: see ``parameter_field``.
        flow: the flow map of one step: a ``Flow``, a spec or a registered name
            (``phys_l2o.registered("flow")``), with its options (``horizon``, ``steps``;
            ``rtol``/``atol``/``options`` for torchdiffeq methods).

    Example:
        >>> ParameterStateOptimizer().num_params()   # log M^{-1} and log a_p
        2
        >>> momentum_sgd(0.01, 0.9).num_params()
        0
    """

    name = "hnn-param"

    def __init__(self, field: nn.Module | None = None, *, lr: float = 0.01,
                 momentum: float = 0.9, nesterov: bool = False, learned: bool = True,
                 correction_hidden: int = 0, control: bool = False,
                 flow: Flow | Mapping[str, Any] | str = "symplectic-euler") -> None:
        super().__init__()
        if field is None:
            field = parameter_field(lr, momentum, nesterov=nesterov, learned=learned,
                                    correction_hidden=correction_hidden, control=control)
        else:
            field = build_part(field, "field", width=1)
        if not isinstance(getattr(field, "potential", None), LossPotential):
            raise ValueError("the parameter-state optimizer needs a field whose `potential` is "
                             "a LossPotential (the loss gradient of each step)")
        self.field = field
        self.flow = build_part(flow, "flow")
        if not isinstance(self.flow, Flow):
            raise ValueError(f"flow must be a flow map (a Flow, its spec or its name), got "
                             f"{flow!r}")
        if getattr(self.flow, "adjoint", False):
            raise ValueError("the adjoint is not supported in the parameter state: its "
                             "backward solve would need the graph of the step's loss gradient")

    @property
    def coordinatewise(self) -> bool:
        return True

    def init_state(self, params: Tensor, segments: Sequence[int]) -> ParameterState:
        check_init(params, segments)
        return ParameterState(params.new_zeros(params.shape))

    def state_to_coordinates(self, state: ParameterState) -> dict[str, Tensor]:
        return {"q_dot": rearrange(state.q_dot, "1 coords -> coords")}

    def state_from_coordinates(self, fields: dict[str, Tensor], params: Tensor,
                               segments: Sequence[int]) -> ParameterState:
        return ParameterState(rearrange(fields["q_dot"], "coords -> 1 coords"))

    def step(self, params: Tensor, grad: Tensor,
             state: ParameterState) -> tuple[Tensor, ParameterState]:
        check_step(params, grad)
        # every parameter is the coordinate of a system with d = 1 feature
        q, q_dot, g = (rearrange(x, "batch coords -> batch coords 1")
                       for x in (params, state.q_dot, grad))
        # the step's loss gradient reaches the potential as an argument of the field
        q_next, q_dot_next = self.flow(functools.partial(self.field, grad=g), q, q_dot)
        return (rearrange(q_next, "batch coords 1 -> batch coords") - params,
                ParameterState(rearrange(q_dot_next, "batch coords 1 -> batch coords")))


def momentum_sgd(lr: float, momentum: float = 0.9,
                 nesterov: bool = False) -> ParameterStateOptimizer:
    """SGD with (Nesterov) momentum as a port-Hamiltonian system with fixed pieces.

    Potential: the loss; ``M^{-1} = lr`` (``lr * mu`` for Nesterov); dissipation
    ``diag(0, (1 - mu) / lr)`` (``diag(lr, (1 - mu) / (lr * mu))``); no control; one
    symplectic Euler step of size 1. Its trajectory is ``torch.optim.SGD(lr, momentum=mu,
    nesterov=nesterov)``'s, and its spec rebuilds it as ``"hnn-param"``.
    """
    return ParameterStateOptimizer(lr=lr, momentum=momentum, nesterov=nesterov, learned=False)
