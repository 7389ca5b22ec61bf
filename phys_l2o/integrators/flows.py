"""Flow maps: advance the state ``(q, q_dot)`` of a field over a time horizon, chosen by name.

A flow map is the numerical solution operator of the port-Hamiltonian field:

    q_T, q_dot_T = flow(field, q, q_dot)        each (..., d)

over ``t in [0, horizon]`` (``integrators.count_calls`` counts the field's evaluations).
Registered as the ``flow`` kind (``phys_l2o.registry``):

* the torchdiffeq solvers (``euler``, ``midpoint``, ``heun3``, ``rk4``, ``bosh3``, ``dopri5``,
  ``dopri8``), with ``rtol``/``atol``, torchdiffeq's ``options`` mapping and the adjoint;
* the symplectic schemes ``symplectic-euler`` (semi-implicit Euler, kick then drift) and
  ``leapfrog`` (Stormer-Verlet, half kick, drift, half kick). Explicit schemes do not
  preserve the Hamiltonian structure; without dissipation and control these two preserve the
  phase-space volume exactly and keep the energy bounded over long horizons.

The gradient-state read-outs (``.ode_readout``) and the parameter-state optimizer
(``phys_l2o.optimizers.ParameterStateOptimizer``) both step with these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from ..checks import positive_int, positive_number
from ..registry import register


class Flow(nn.Module):
    """Base class: ``forward(field, q, q_dot) -> (q_T, q_dot_T)``, shapes ``(..., d)``.

    Flows hold no weights; they are modules so that they show in an optimizer's ``repr``.

    Args:
        horizon: the integration time ``T > 0``.
    """

    def __init__(self, horizon: float = 1.0) -> None:
        super().__init__()
        self.horizon = positive_number("the horizon", horizon)

    def forward(self, field: nn.Module, q: Tensor, q_dot: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"horizon={self.horizon}"


class _TimeField(nn.Module):
    """The field as torchdiffeq wants it, ``(t, (q, q_dot)) -> (dq/dt, dq_dot/dt)``.

    An ``nn.Module`` holding the field, so ``odeint_adjoint`` finds the field's weights.
    """

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        return self.field(*state)


def _odeint(field: nn.Module, q: Tensor, q_dot: Tensor, t: Tensor, *, method: str,
            rtol: float, atol: float, options: Mapping[str, Any] | None,
            adjoint: bool) -> tuple[Tensor, Tensor]:
    func = _TimeField(field)
    kwargs = {"rtol": rtol, "atol": atol, "method": method, "options": dict(options or {})}
    if adjoint:
        q_t, q_dot_t = odeint_adjoint(func, (q, q_dot), t, **kwargs,
                                      adjoint_params=tuple(field.parameters()))
    else:
        q_t, q_dot_t = odeint(func, (q, q_dot), t, **kwargs)
    return q_t, q_dot_t


def odeint_field(field: nn.Module, q: Tensor, q_dot: Tensor, t: Tensor, *,
                 method: str = "dopri5", rtol: float = 1e-7, atol: float = 1e-9,
                 options: Mapping[str, Any] | None = None,
                 adjoint: bool = False) -> tuple[Tensor, Tensor]:
    """The trajectory of ``field`` from ``(q, q_dot)`` at the times ``t``, by torchdiffeq.

    Args:
        field: ``(q, q_dot) -> (dq/dt, dq_dot/dt)`` (autonomous).
        q: the coordinate at ``t[0]``, ``(..., d)``.
        q_dot: the velocity at ``t[0]``, ``(..., d)``.
        t: increasing times ``(time,)``.
        method: a torchdiffeq method name, passed to ``torchdiffeq.odeint``.
        rtol: relative tolerance (torchdiffeq's default when ``None``).
        atol: absolute tolerance (torchdiffeq's default when ``None``).
        options: torchdiffeq's per-solver options.
        adjoint: use ``odeint_adjoint`` (memory constant in the number of steps).

    Returns:
        ``(q_t, q_dot_t)``, each ``(time, ..., d)``.
    """
    return _odeint(field, q, q_dot, t, method=method, rtol=rtol, atol=atol, options=options,
                   adjoint=adjoint)


class TorchdiffeqFlow(Flow):
    """A torchdiffeq solver over ``[0, horizon]``; the subclass fixes ``method``.

    Fixed-grid methods take one step of size ``horizon`` unless ``options`` gives a
    ``step_size``. Without the adjoint, their steps are taken here (``FIXED_GRID_STEPS``):
    torchdiffeq's own step functions, the same operations in the same order, but without its
    solver's preallocated solution tensor, which ``torch.func.vmap`` cannot fill, so that
    optimizers with these flows stack (``optimizers.Stacked``). Adaptive methods pick one step
    size for the whole state tensor (every coordinate of every problem), so a problem's result
    depends, within the tolerance, on the others in its batch.

    Args:
        horizon: the integration time ``T``.
        rtol: relative tolerance of adaptive methods (ignored by fixed-grid ones). The
            defaults are loose, as fits one optimizer step; torchdiffeq's own are ``1e-7``.
        atol: absolute tolerance of adaptive methods (torchdiffeq's own default: ``1e-9``).
        options: torchdiffeq's per-solver options (``step_size``, ``max_num_steps``, ...).
        adjoint: differentiate with the adjoint method (``odeint_adjoint``) instead of
            back-propagating through the solver's operations.
    """

    method: str = ""

    def __init__(self, horizon: float = 1.0, rtol: float = 1e-3, atol: float = 1e-6,
                 options: Mapping[str, Any] | None = None, adjoint: bool = False) -> None:
        super().__init__(horizon)
        self.rtol, self.atol = positive_number("rtol", rtol), positive_number("atol", atol)
        self.options = dict(options or {})
        self.adjoint = bool(adjoint)
        if "step_size" in self.options:
            positive_number("options.step_size", self.options["step_size"])
        #: the step function taken here (a fixed-grid method without the adjoint), else None
        self.step_function = None if self.adjoint else FIXED_GRID_STEPS.get(self.method)
        if self.step_function is not None:
            extra = sorted(set(self.options) - {"step_size"})
            if extra:
                raise ValueError(f"the {self.method!r} flow takes only options.step_size "
                                 f"(without the adjoint), got {extra}")
            #: the grid's step sizes by dtype, computed once (constants for torch.compile)
            self.grids = {dtype: grid_steps(self.horizon, self.options.get("step_size"), dtype)
                          for dtype in (torch.float16, torch.bfloat16, torch.float32,
                                        torch.float64)}

    def forward(self, field: nn.Module, q: Tensor, q_dot: Tensor) -> tuple[Tensor, Tensor]:
        if self.step_function is not None:
            return _fixed_grid(self.step_function, field, q, q_dot, self.grids[q.dtype])
        t = torch.tensor([0.0, self.horizon], dtype=q.dtype, device=q.device)
        q_t, q_dot_t = _odeint(field, q, q_dot, t, method=self.method, rtol=self.rtol,
                               atol=self.atol, options=self.options, adjoint=self.adjoint)
        return q_t[-1], q_dot_t[-1]

    def extra_repr(self) -> str:
        return (f"method={self.method!r}, horizon={self.horizon}, rtol={self.rtol}, "
                f"atol={self.atol}, options={self.options}, adjoint={self.adjoint}")


class _Pair:
    """``(q, q_dot)`` with the arithmetic of one vector, for the stages of a Runge-Kutta step."""

    __slots__ = ("q", "q_dot")

    def __init__(self, q: Tensor, q_dot: Tensor) -> None:
        self.q, self.q_dot = q, q_dot

    def __add__(self, other: _Pair) -> _Pair:
        return _Pair(self.q + other.q, self.q_dot + other.q_dot)

    def __sub__(self, other: _Pair) -> _Pair:
        return _Pair(self.q - other.q, self.q_dot - other.q_dot)

    def __mul__(self, c: float) -> _Pair:
        return _Pair(self.q * c, self.q_dot * c)


# torchdiffeq's fixed-grid step functions (``torchdiffeq/_impl/fixed_grid.py``, ``rk_common``):
# ``f`` the field on a pair, ``y`` the state at the step's start, ``dt`` its size; each returns
# the increment ``dy`` (``rk4`` is torchdiffeq's, the 3/8 rule).


def _euler_step(f, y: _Pair, dt: float) -> _Pair:
    return f(y) * dt


def _midpoint_step(f, y: _Pair, dt: float) -> _Pair:
    return f(y + f(y) * (0.5 * dt)) * dt


def _heun3_step(f, y: _Pair, dt: float) -> _Pair:
    k1 = f(y)
    k2 = f(y + k1 * dt * (1 / 3))
    k3 = f(y + k2 * (2 / 3) * dt)
    return (k1 * 0.25 + k3 * 0.75) * dt


def _rk4_step(f, y: _Pair, dt: float) -> _Pair:
    k1 = f(y)
    k2 = f(y + k1 * dt * (1 / 3))
    k3 = f(y + (k2 - k1 * (1 / 3)) * dt)
    k4 = f(y + (k1 - k2 + k3) * dt)
    return (k1 + (k2 + k3) * 3 + k4) * dt * 0.125


#: the fixed-grid methods, by name: their step functions.
FIXED_GRID_STEPS = {"euler": _euler_step, "midpoint": _midpoint_step, "heun3": _heun3_step,
                    "rk4": _rk4_step}


def grid_steps(horizon: float, step_size: float | None,
               dtype: torch.dtype) -> tuple[float, ...]:
    """The step sizes of torchdiffeq's fixed grid over ``[0, horizon]`` in ``dtype``: one
    step, or ``ceil(T / h + 1)`` points ``k h`` with the last moved to ``T``, computed in the
    state's dtype as torchdiffeq computes them."""
    if step_size is None:
        return (horizon,)
    end = torch.tensor(horizon, dtype=dtype)
    points = int(torch.ceil(end / step_size + 1).item())
    grid = torch.arange(points, dtype=dtype) * step_size
    grid[-1] = end
    return tuple((grid[1:] - grid[:-1]).tolist())


def _fixed_grid(step, field: nn.Module, q: Tensor, q_dot: Tensor,
                dts: tuple[float, ...]) -> tuple[Tensor, Tensor]:
    """``step`` over the grid's steps ``dts``, from ``(q, q_dot)``."""

    def f(y: _Pair) -> _Pair:
        return _Pair(*field(y.q, y.q_dot))

    y = _Pair(q, q_dot)
    for dt in dts:
        y = y + step(f, y, dt)
    return y.q, y.q_dot


#: torchdiffeq's adaptive methods: their step-size control depends on the data, which
#: torch.compile cannot trace (``compilable = False``).
ADAPTIVE_METHODS = ("bosh3", "dopri5", "dopri8")
#: the torchdiffeq methods registered as flow maps: the fixed-grid ones, then the adaptive.
ODE_METHODS = (*FIXED_GRID_STEPS, *ADAPTIVE_METHODS)

for _method in ODE_METHODS:
    _name = f"{_method.capitalize()}Flow"
    _cls = type(_name, (TorchdiffeqFlow,), {
        "method": _method, "compilable": _method not in ADAPTIVE_METHODS,
        "__module__": __name__, "__qualname__": _name,
        "__doc__": f"torchdiffeq's ``{_method}`` over ``[0, horizon]`` (see TorchdiffeqFlow)."})
    register("flow", _method)(_cls)
    globals()[_name] = _cls


class _SplitFlow(Flow):
    """A fixed-step splitting scheme: ``steps`` sub-steps of size ``h = horizon / steps``.

    Args:
        horizon: the integration time.
        steps: sub-steps.
    """

    def __init__(self, horizon: float = 1.0, steps: int = 1) -> None:
        super().__init__(horizon)
        self.steps = positive_int("steps", steps)

    def substep(self, field: nn.Module, q: Tensor, q_dot: Tensor,
                h: float) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, field: nn.Module, q: Tensor, q_dot: Tensor) -> tuple[Tensor, Tensor]:
        h = self.horizon / self.steps
        for _ in range(self.steps):
            q, q_dot = self.substep(field, q, q_dot, h)
        return q, q_dot

    def extra_repr(self) -> str:
        return f"horizon={self.horizon}, steps={self.steps}"


@register("flow", "symplectic-euler")
class SymplecticEuler(_SplitFlow):
    """Semi-implicit (symplectic) Euler: kick the velocity, then drift with the new velocity.

    With ``h = horizon / steps`` and ``(a_q, a_v) = field(q, v)`` (``a_q = dq/dt``,
    ``a_v = dq_dot/dt``), each sub-step is:

        v' = v + h a_v(q, v)
        q' = q + h a_q(q, v')

    Two field evaluations per sub-step. With ``M^{-1} = lr``, dissipation
    ``diag(0, (1 - mu) / lr)`` and ``h = 1`` it is SGD with momentum ``mu`` exactly.
    Options: ``horizon`` (the integration time) and ``steps`` (sub-steps).
    """

    def substep(self, field: nn.Module, q: Tensor, q_dot: Tensor,
                h: float) -> tuple[Tensor, Tensor]:
        q_dot = q_dot + h * field(q, q_dot)[1]
        return q + h * field(q, q_dot)[0], q_dot


@register("flow", "leapfrog")
class Leapfrog(_SplitFlow):
    """Stormer-Verlet (leapfrog): half kick, drift, half kick; second order and symplectic.

    Each sub-step of size ``h = horizon / steps`` (notation of ``SymplecticEuler``):

        v_half = v + h/2 a_v(q, v)
        q'     = q + h a_q(q, v_half)
        v'     = v_half + h/2 a_v(q', v_half)

    Three field evaluations per sub-step. When ``dV/dq`` is held fixed over the step (the
    parameter-state optimizer), both kicks see the same gradient. Options: ``horizon`` and
    ``steps``, as for ``SymplecticEuler``.
    """

    def substep(self, field: nn.Module, q: Tensor, q_dot: Tensor,
                h: float) -> tuple[Tensor, Tensor]:
        q_dot = q_dot + 0.5 * h * field(q, q_dot)[1]
        q = q + h * field(q, q_dot)[0]
        return q, q_dot + 0.5 * h * field(q, q_dot)[1]
