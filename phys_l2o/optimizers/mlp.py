"""The unstructured control: a per-coordinate MLP on the same features as the HNN's.

Every coordinate's features (``AdaptiveFeatures``: Adam-normalized momenta, normalized per
parameter tensor) go through one small MLP shared by every coordinate, with no physics and
no carried ``q_dot``; its output is the direction:

    f, state' = features(grad, state)                (batch, coords, d)
    direction = MLP(f)                               Linear -> ReLU, ``layers`` times, Linear(-> 1)
    update    = direction / rms(direction)           (``output_norm``: per parameter tensor)

applied as ``theta + out_mul * update``. Set against ``HNN(features=...)``, it isolates
what the port-Hamiltonian structure adds on the same inputs and outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from einops import rearrange
from torch import Tensor, nn

from ..checks import positive_int, positive_number
from ..physics.linear import FeatureLinear
from ..registry import register
from .base import LearnedOptimizer, Segments, check_init, check_step
from .features import build_features, output_normalize


class MLPState(NamedTuple):
    """The MLP optimizer's state: the problems' segments and the features' state
    ``(batch, coords, ...)``."""

    features: Tensor
    segments: Segments


@register("optimizer", "mlp-optimizer")
class MLPOptimizer(LearnedOptimizer):
    """A per-coordinate MLP from adaptive features to an update: 171 weights by default, about
    as many as the HNN with the same features (181).

    Args:
        hidden: units per hidden layer.
        layers: hidden layers (each ``Linear`` then ``ReLU``), before the ``Linear`` head.
        features: the stateful features (``d`` is their ``width``): a module, a spec or a
            name; ``True`` is ``AdaptiveFeatures()``.
        output_norm: divide the direction by its RMS over each parameter tensor.
        out_mul: the scale the updates are trained and applied with (``step_scale``).

    Example:
        >>> MLPOptimizer().num_params()               # about HNN(features=True)'s 181
        171
    """

    name = "mlp-optimizer"

    def __init__(self, *, hidden: int = 10, layers: int = 2,
                 features: bool | Mapping[str, Any] | str | nn.Module = "adaptive-features",
                 output_norm: bool = True, out_mul: float = 0.001) -> None:
        super().__init__()
        positive_int("hidden", hidden)
        positive_int("layers", layers)
        out_mul = positive_number("out_mul", out_mul)
        self.features = build_features(features)
        if self.features is None:
            raise ValueError("the MLP optimizer needs features (e.g. 'adaptive-features')")
        sizes = [self.features.width] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:]):
            blocks += [FeatureLinear(a, b), nn.ReLU()]
        self.net = nn.Sequential(*blocks, FeatureLinear(hidden, 1))
        self.output_norm = bool(output_norm)
        self.out_mul = out_mul

    def init_state(self, params: Tensor, segments: Sequence[int]) -> MLPState:
        check_init(params, segments)
        return MLPState(self.features.init(params), Segments.of(segments, params.device))

    def state_to_coordinates(self, state: MLPState) -> dict[str, Tensor]:
        return {"features": rearrange(state.features, "1 coords ... -> coords ...")}

    def state_from_coordinates(self, fields: dict[str, Tensor], params: Tensor,
                               segments: Sequence[int]) -> MLPState:
        return MLPState(fields["features"][None], Segments.of(segments, params.device))

    def step(self, params: Tensor, grad: Tensor, state: MLPState) -> tuple[Tensor, MLPState]:
        check_step(params, grad)
        feats, feature_state = self.features.features(grad, state.features, state.segments)
        direction = rearrange(self.net(feats), "batch coords 1 -> batch coords")
        if self.output_norm:
            direction = output_normalize(direction, state.segments)
        return direction, state._replace(features=feature_state)
