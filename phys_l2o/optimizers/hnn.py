"""The paper's Hamiltonian Neural Network optimizer: preprocessing, field, read-out.

For every coordinate, ``q`` is its gradient and ``q_dot`` the network's own output of the
previous step (zeros at step 0):

    direction, q_dot' = readout(field, pre(grad), pre(q_dot))
    update            = direction                 (applied as theta + out_mul * update)

With ``normalize`` (the paper's quadratic setting) ``q_dot'`` is divided by its L2 norm over
each parameter tensor.

With ``features`` (``AdaptiveFeatures``: Adam-normalized momenta at several decays,
normalized per parameter tensor) ``q`` is the coordinate's feature vector instead of
``pre(grad)``, and ``d`` its width. The read-out still gives one ``q_dot'`` per coordinate
(its contract), so the carried ``q_dot`` stays a scalar per coordinate, fed to the field
tiled to the ``d`` features (the field's learned pieces mix it). With ``output_norm`` the
direction is divided by its RMS over each parameter tensor, so that ``out_mul`` is the step
size of every tensor in parameter units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn

from ..checks import positive_number
from ..integrators import EulerReadout, Readout
from ..physics import PortHamiltonianField
from ..physics.field import PIECES, feature_width
from ..physics.paper_field import PAPER_PIECES
from ..registry import build, build_part, register
from .base import LearnedOptimizer, Segments, check_init, check_step, segment_normalize
from .features import build_features, output_normalize
from .preprocessing import build_preprocessing

Part = nn.Module | Mapping[str, Any] | str | None


def paper_field(width: int, **replace: nn.Module | None) -> PortHamiltonianField:
    """The paper's field: ``L L^T`` inertia, ``dV/dq`` MLP, linear dissipation, control MLP.

    Args:
        width: the feature width ``d``.
        **replace: pieces to swap by name (``potential``, ``inverse_inertia``,
            ``dissipation``, ``control``); ``None`` leaves a piece out.
    """
    # every piece is built (in this order) before any is replaced: the weights of a field
    # with a piece replaced are those of the paper's, that piece aside
    pieces = {name: build(spec, PIECES[name], width=width) for name, spec in PAPER_PIECES.items()}
    unknown = set(replace) - set(pieces)
    if unknown:
        raise ValueError(f"unknown pieces {sorted(unknown)}; choose from {sorted(pieces)}")
    pieces.update(replace)
    return PortHamiltonianField(**pieces)


class HNNState(NamedTuple):
    """The HNN's state: the carried ``q_dot`` ``(batch, coords)``, the problems' segments and,
    with ``features``, their state ``(batch, coords, ...)`` (else ``None``)."""

    q_dot: Tensor
    segments: Segments
    features: Tensor | None = None


@register("optimizer", "hnn")
class HNN(LearnedOptimizer):
    """A physical-prior optimizer: any port-Hamiltonian field read out by any read-out.

    Args:
        field: the vector field ``(q, q_dot) -> (dq/dt, dq_dot/dt)`` on ``d`` features: a
            module, a spec (built for the width ``d``) or ``None`` for the paper's field
            (``paper_field``).
        preprocessing: ``True`` for the L2L preprocessing (``d = 2``), ``False`` for none
            (``d = 1``), or a preprocessing module, spec or name (``d`` is its ``width``).
        readout: a read-out module, spec or name (``phys_l2o.registered("readout")``);
            ``None`` is the paper's ``euler-readout``. For a full ODE solve:
            ``{"type": "flow-readout", "flow": {"type": "rk4"}}``.
        out_mul: the scale the updates are trained and applied with (``step_scale``).
        normalize: divide ``q_dot'`` by its L2 norm over each parameter tensor.
        detach_q_dot: read the carried ``q_dot`` without its graph, as the original MNIST HNN
            does (it passes ``q_dot.data`` to the preprocessing; difference D1 of the
            ``reference`` protocol). The meta-gradient then never reaches the pieces that act
            on the parameters only through ``q_dot`` (the inverse inertia, the control and the
            ``q_dot`` head of the paper's field: 23 of its 55 weights).
        features: stateful features that replace the preprocessing as ``q`` (``d`` is their
            ``width``): ``True`` for ``AdaptiveFeatures()``, a module, a spec or a name;
            ``None`` for none. ``normalize=False`` suits them (an L2 norm shrinks ``q_dot`` of
            large tensors).
        output_norm: divide the direction by its RMS over each parameter tensor.

    Raises:
        ValueError: the field or the read-out was built for another feature width than the
            preprocessing gives (the message names both), or ``features`` come with a
            ``preprocessing``.

    Example:
        >>> HNN().num_params()          # the paper's quadratic optimizer
        19
        >>> HNN(preprocessing=True).num_params()
        55
    """

    name = "hnn"
    #: switches named in a spec only when not at their default (older specs stay the same)
    spec_quiet = ("detach_q_dot", "features", "output_norm")

    def __init__(self, field: Part = None, *,
                 preprocessing: bool | Mapping[str, Any] | str | nn.Module = False,
                 readout: Part = None, out_mul: float = 0.001, normalize: bool = True,
                 detach_q_dot: bool = False,
                 features: bool | Mapping[str, Any] | str | nn.Module | None = None,
                 output_norm: bool = False) -> None:
        super().__init__()
        out_mul = positive_number("out_mul", out_mul)
        self.preprocess = build_preprocessing(preprocessing)
        if getattr(self.preprocess, "stateful", False):
            raise ValueError(f"{type(self.preprocess).__name__} are stateful features, not a "
                             "preprocessing: pass them as features=...")
        self.features = build_features(features)
        if self.features is not None and preprocessing is not False:
            raise ValueError("with features, q is the feature vector: leave preprocessing at "
                             f"False (got {preprocessing!r})")
        width = self.preprocess.width if self.features is None else self.features.width
        source = preprocessing if self.features is None else self.features
        self.field = paper_field(width) if field is None else build_part(field, "field",
                                                                          width=width)
        check_width(self.field, width, "field", source)
        self.readout: Readout = (EulerReadout(width) if readout is None
                                 else build_part(readout, "readout", width=width))
        check_width(self.readout, width, "read-out", source)
        self.out_mul = out_mul
        self.normalize = bool(normalize)
        self.detach_q_dot = bool(detach_q_dot)
        self.output_norm = bool(output_norm)

    @property
    def min_segment(self) -> int:
        # a unit-norm q_dot of a one-element tensor is its sign: it would oscillate
        return 2 if self.normalize else 1

    @property
    def coordinatewise(self) -> bool:
        return not (self.normalize or self.output_norm or self.features is not None)

    def init_state(self, params: Tensor, segments: Sequence[int]) -> HNNState:
        check_init(params, segments)
        return HNNState(params.new_zeros(params.shape), Segments.of(segments, params.device),
                        None if self.features is None else self.features.init(params))

    def state_to_coordinates(self, state: HNNState) -> dict[str, Tensor]:
        fields = {"q_dot": rearrange(state.q_dot, "1 coords -> coords")}
        if state.features is not None:
            fields["features"] = rearrange(state.features, "1 coords ... -> coords ...")
        return fields

    def state_from_coordinates(self, fields: dict[str, Tensor], params: Tensor,
                               segments: Sequence[int]) -> HNNState:
        features = fields.get("features") if self.features is not None else None
        return HNNState(rearrange(fields["q_dot"], "coords -> 1 coords"),
                        Segments.of(segments, params.device),
                        None if features is None else features[None])

    def step(self, params: Tensor, grad: Tensor, state: HNNState) -> tuple[Tensor, HNNState]:
        check_step(params, grad)
        carried = state.q_dot.detach() if self.detach_q_dot else state.q_dot
        feature_state = state.features
        if self.features is None:
            # every coordinate becomes one scalar feature, which the preprocessing widens to d
            q = self.preprocess(rearrange(grad, "batch coords -> batch coords 1"))
            q_dot = self.preprocess(rearrange(carried, "batch coords -> batch coords 1"))
        else:
            q, feature_state = self.features.features(grad, state.features, state.segments)
            q_dot = rearrange(carried, "batch coords -> batch coords 1").expand_as(q)
        direction, next_q_dot = self.readout(self.field, q, q_dot)     # (batch, coords, 1)
        next_q_dot = rearrange(next_q_dot, "batch coords 1 -> batch coords")
        if self.normalize:
            next_q_dot = segment_normalize(next_q_dot, state.segments)
        direction = rearrange(direction, "batch coords 1 -> batch coords")
        if self.output_norm:
            direction = output_normalize(direction, state.segments)
        return direction, state._replace(q_dot=next_q_dot, features=feature_state)


def check_width(module: nn.Module, width: int, what: str, preprocessing: Any) -> None:
    """Refuse a module built for another feature width than ``width``.

    A module that declares no ``width`` is tried on ``width`` features instead.
    """
    declared = feature_width(module)
    if isinstance(preprocessing, bool):
        source = f"preprocessing={preprocessing!r} gives d={width}"
    elif hasattr(preprocessing, "init"):  # stateful features
        source = f"its features give d={width}"
    else:
        source = f"its preprocessing gives d={width}"
    if declared is not None:
        if declared != width:
            raise ValueError(f"the {what} was built for d={declared} features but the "
                             f"optimizer's {source}: build the {what} with width {width}, or "
                             "change the preprocessing")
        return
    if what != "field":
        return
    probe = torch.zeros(1, width)
    try:
        with torch.no_grad():
            out = module(probe, probe)
        ok = all(tuple(o.shape) == (1, width) for o in out)
    except Exception as error:  # noqa: BLE001 - any failure means the widths disagree
        raise ValueError(f"the {what} does not take d={width} features (the optimizer's "
                         f"{source}): {error}") from error
    if not ok:
        raise ValueError(f"the {what} does not map d={width} features to d={width} features "
                         f"(the optimizer's {source})")
