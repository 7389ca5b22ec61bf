"""The paper's Hamiltonian Neural Network optimizer: preprocessing, field, integrator.

For every coordinate, ``q`` is its gradient and ``q_dot`` the network's own output of the
previous step (zeros at step 0):

    direction, q_dot' = integrator(field, pre(grad), pre(q_dot))
    theta'            = theta + out_mul * direction

With ``normalize`` (the paper's quadratic setting) ``q_dot'`` is divided by its L2 norm over
each parameter tensor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from ..integrators import make_integrator
from ..physics import (
    CholeskyInverseInertia,
    ControlMLP,
    LinearDissipation,
    PortHamiltonianField,
    PotentialGradientMLP,
)
from .base import LearnedOptimizer, State, segment_ids, segment_normalize
from .preprocessing import make_preprocessing


def paper_field(width: int, **replace: nn.Module | None) -> PortHamiltonianField:
    """The paper's field: ``L L^T`` inertia, ``dV/dq`` MLP, linear dissipation, control MLP.

    Args:
        width: the feature width ``d``.
        **replace: pieces to swap by name (``potential``, ``inverse_inertia``,
            ``dissipation``, ``control``); ``None`` leaves a piece out.
    """
    pieces = {"potential": PotentialGradientMLP(width),
              "inverse_inertia": CholeskyInverseInertia(width),
              "dissipation": LinearDissipation(width), "control": ControlMLP(width)}
    unknown = set(replace) - set(pieces)
    if unknown:
        raise ValueError(f"unknown pieces {sorted(unknown)}; choose from {sorted(pieces)}")
    pieces.update(replace)
    return PortHamiltonianField(**pieces)


class HNN(LearnedOptimizer):
    """A physical-prior optimizer: any port-Hamiltonian field read out by any integrator.

    Args:
        field: the vector field ``(q, q_dot) -> (dq/dt, dq_dot/dt)`` on ``d`` features; ``None``
            builds the paper's field (``paper_field``).
        preprocessing: apply the L2L preprocessing (``d = 2``) to ``q`` and ``q_dot``;
            else ``d = 1``.
        integrator: a registered integrator name (see ``phys_l2o.integrators.INTEGRATORS``).
        integrator_options: keyword options of that integrator.
        out_mul: scale of the parameter step.
        normalize: divide ``q_dot'`` by its L2 norm over each parameter tensor.

    Example:
        >>> HNN().num_params()          # the paper's quadratic optimizer
        19
        >>> HNN(preprocessing=True).num_params()
        55
    """

    name = "hnn"

    def __init__(self, field: nn.Module | None = None, *, preprocessing: bool = False,
                 integrator: str = "euler-readout",
                 integrator_options: Mapping[str, Any] | None = None,
                 out_mul: float = 0.001, normalize: bool = True) -> None:
        super().__init__()
        self.preprocess = make_preprocessing(preprocessing)
        width = self.preprocess.width
        self.field = paper_field(width) if field is None else field
        self.integrator = make_integrator(integrator, width, integrator_options)
        self.out_mul = out_mul
        self.normalize = normalize
        self._config = {"preprocessing": preprocessing, "integrator": integrator,
                        "integrator_options": dict(integrator_options or {}),
                        "out_mul": out_mul, "normalize": normalize}

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def init_state(self, params: Tensor, segments: Sequence[int]) -> State:
        return {"q_dot": params.new_zeros(params.shape),
                "segment_ids": segment_ids(segments, params.device),
                "num_segments": len(segments)}

    def step(self, params: Tensor, grad: Tensor, state: State) -> tuple[Tensor, State]:
        q = self.preprocess(grad.unsqueeze(-1))                 # (batch, coords, d)
        q_dot = self.preprocess(state["q_dot"].unsqueeze(-1))   # (batch, coords, d)
        direction, next_q_dot = self.integrator(self.field, q, q_dot)
        next_q_dot = next_q_dot.squeeze(-1)
        if self.normalize:
            next_q_dot = segment_normalize(next_q_dot, state["segment_ids"], state["num_segments"])
        new_state = dict(state, q_dot=next_q_dot)
        return params + self.out_mul * direction.squeeze(-1), new_state
