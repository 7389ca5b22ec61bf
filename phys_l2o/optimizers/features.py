"""Adaptive per-coordinate features: Adam-normalized momenta, normalized per parameter tensor.

Small per-coordinate learned optimizers generalize across tensors and tasks when what they
see has one scale everywhere (as in Celo). ``AdaptiveFeatures`` turns each coordinate's
gradient ``g`` into ``1 + len(decays)`` features, with Adam's bias-corrected moments:

    m_k = b_k m_k + (1 - b_k) g        v = b_v v + (1 - b_v) g^2       (b_v: second_decay)
    f   = [g, m_1 / (1 - b_1^t), ...] / (sqrt(v / (1 - b_v^t)) + eps)
    f'  = f / rms(f)                   rms over the coordinate's parameter tensor, per feature

The Adam normalization makes every feature dimensionless (a constant gradient gives exactly
1), so scaling a problem's gradients changes none of them; the per-tensor RMS equalizes the
features of tensors with different statistics. The RMS is pooled with ``prior_count``
pseudo-elements of feature 1 (the natural scale of an Adam-normalized feature):

    rms(f)^2 = (sum over the tensor of f^2 + prior_count) / (n + prior_count)

A tensor of many elements gets RMS 1 (to ``O(prior_count / n)``); a one-element tensor (a
scalar bias) keeps its magnitude, ``f / sqrt((f^2 + c) / (1 + c))`` with ``c = prior_count``,
bounded by ``sqrt(1 + c)`` and monotone in ``f``, instead of becoming ``sign(f)`` forever.

The features are stateful, so they have a functional API: ``init`` gives the state and
``features`` (or a call) the features and the next state. They are registered as the
``preprocessing`` kind but are not a preprocessing (which maps a scalar to ``d`` features,
statelessly): ``HNN(features=...)`` and ``MLPOptimizer`` take them, and keep their state in
their own. ``output_normalize`` is the output normalization those optimizers share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..checks import positive_number
from ..registry import build_part, register
from .base import Segments

#: the floor of a tensor's RMS in ``output_normalize`` (an all-zero direction stays zero).
OUTPUT_FLOOR = 1e-12


def segment_rms(x: Tensor, segments: Segments, prior_count: float = 0.0,
                eps: float = 1e-12) -> Tensor:
    """The RMS of ``x`` ``(batch, coords, width)`` over each parameter tensor, per feature.

    Args:
        x: the values, ``(batch, coords, width)``.
        segments: which parameter tensor each coordinate belongs to.
        prior_count: pseudo-elements of value 1 pooled into every tensor's mean square.
        eps: the floor of the RMS.

    Returns:
        ``(batch, coords, width)``: each coordinate's tensor's RMS.
    """
    ones = torch.ones_like(x[..., :1])
    if segments.count == 1:
        sums = torch.cat([x * x, ones], -1).sum(1, keepdim=True)
    else:
        # the sums of squares and the element counts of every tensor in one scatter
        sums = x.new_zeros(x.shape[0], segments.count, x.shape[-1] + 1).index_add_(
            1, segments.ids, torch.cat([x * x, ones], -1))
    squares, counts = sums[..., :-1], sums[..., -1:]
    rms = ((squares + prior_count) / (counts + prior_count)).clamp_min(eps * eps).sqrt()
    return rms if segments.count == 1 else rms[:, segments.ids]


def output_normalize(direction: Tensor, segments: Segments) -> Tensor:
    """``direction`` ``(batch, coords)`` divided by its RMS over each parameter tensor.

    The trained ``out_mul`` is then the step size of every tensor in parameter units; a
    one-element tensor moves by exactly ``out_mul`` in the sign of its direction.
    """
    rms = segment_rms(direction[..., None], segments, eps=OUTPUT_FLOOR)
    return direction / rms[..., 0]


@register("preprocessing", "adaptive-features")
class AdaptiveFeatures(nn.Module):
    """Gradient and momenta at several decays, Adam-normalized, then RMS-normalized per tensor.

    The state of every coordinate is ``(batch, coords, len(decays) + 2)``: the momenta, the
    second moment and the step count (for the bias correction; counted per coordinate, so
    that a parameter that joins later starts its own count, as in ``torch.optim.Adam``).
    The features are ``width = 1 + len(decays)`` wide: the gradient, then the momenta in the
    order of ``decays``. A raw ``1 / sqrt(v)`` feature is left out: it carries the gradient's
    units, which the ``prior_count`` pooling would make scale-dependent.

    Args:
        decays: the decays of the momenta, each in ``[0, 1)``.
        second_decay: the decay of the second moment, in ``[0, 1)``.
        eps: added to ``sqrt(v)`` in the Adam normalization.
        prior_count: unit pseudo-elements pooled into each tensor's RMS (see the module);
            ``0`` is the plain RMS, which maps a one-element tensor to ``sign(f)``.

    Example:
        >>> AdaptiveFeatures().width
        4
    """

    #: stateful: ``init`` and ``features``, not a preprocessing (``HNN(features=...)``).
    stateful = True

    def __init__(self, decays: Sequence[float] = (0.5, 0.9, 0.99), second_decay: float = 0.999,
                 eps: float = 1e-8, prior_count: float = 1.0) -> None:
        super().__init__()
        decays = [check_decay("decays", b) for b in decays]
        if not decays:
            raise ValueError("decays must name at least one momentum decay")
        self.decays = decays
        self.second_decay = check_decay("second_decay", second_decay)
        self.eps = positive_number("eps", eps)
        self.prior_count = positive_number("prior_count", prior_count, zero=True)
        self.width = 1 + len(decays)
        self.register_buffer("betas", torch.tensor(decays), persistent=False)

    def forward(self, grad: Tensor, state: Tensor | None = None,
                segments: Segments | None = None) -> tuple[Tensor, Tensor]:
        """``features`` as a call, from a fresh state and one tensor by default.

        Args:
            grad: the gradients ``(batch, coords)``.
            state: the state (``None``: ``init(grad)``).
            segments: which parameter tensor each coordinate belongs to (``None``: one).
        """
        if state is None:
            state = self.init(grad)
        if segments is None:
            segments = Segments.of([grad.shape[-1]], grad.device)
        return self.features(grad, state, segments)

    def init(self, params: Tensor) -> Tensor:
        """The state before the first step: zeros ``(batch, coords, len(decays) + 2)``.

        Args:
            params: the parameters ``(batch, coords)``.
        """
        return params.new_zeros(*params.shape, len(self.decays) + 2)

    def features(self, grad: Tensor, state: Tensor,
                 segments: Segments) -> tuple[Tensor, Tensor]:
        """One step: the features ``(batch, coords, width)`` and the next state.

        Args:
            grad: the gradients ``(batch, coords)``.
            state: the state (``init``'s, or the last call's).
            segments: which parameter tensor each coordinate belongs to.
        """
        k = len(self.decays)
        betas = self.betas.to(grad.dtype)
        g = grad[..., None]
        count = state[..., k + 1:] + 1
        momenta = betas * state[..., :k] + (1 - betas) * g
        second = self.second_decay * state[..., k:k + 1] + (1 - self.second_decay) * g * g
        corrected = momenta / (1 - betas ** count)
        scale = (second / (1 - self.second_decay ** count)).sqrt() + self.eps
        raw = torch.cat([g, corrected], -1) / scale
        feats = raw / segment_rms(raw, segments, self.prior_count)
        return feats, torch.cat([momenta, second, count], -1)


def check_decay(name: str, value: Any) -> float:
    """A decay: a number in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be numbers in [0, 1), got {value!r}")
    return float(value)


def build_features(value: bool | Mapping[str, Any] | str | nn.Module | None) -> nn.Module | None:
    """``None``/``False``: none; ``True``: ``AdaptiveFeatures()``; else a module, spec or name.

    Raises:
        ValueError: the module has no ``init``/``features`` or no int ``width``.
    """
    if value is True:
        return AdaptiveFeatures()
    module = build_part(value, "preprocessing")
    if module is None:
        return None
    if not (callable(getattr(module, "init", None)) and callable(getattr(module, "features", None))
            and isinstance(getattr(module, "width", None), int)):
        raise ValueError(f"features must be stateful features (an `init`, a `features` and an "
                         f"int `width`, as AdaptiveFeatures has); {type(module).__name__} is not")
    return module
