"""Protocols: this project's way of meta-training and reporting (``corrected``), or the original
code's (``reference``).

With the same weights, this project's optimizers take the same steps as the original code's to
float rounding; what differs is the protocol around them. ``reference`` turns on each
difference that changes a result, every one of which is also a switch of its own (a spec
option, a schedule field, a variant key or a sweep key), so that an ablation can turn one on
alone:

========  =====================================================  ==============================
          the original code                                       switch
========  =====================================================  ==============================
D1        the MNIST HNN reads its carried ``q_dot`` through       ``hnn``: ``detach_q_dot``
          ``.data``: the inverse inertia, the control and the
          ``q_dot`` head (23 of 55 weights) never train
D3        a truncation sums ``F(theta_k) .. F(theta_{k+T-1})``,   schedule: ``loss_window =
          the losses before each update                           "before"``
D4        the reported loss is ``F(theta_99)``, before the last   sweep: ``reported_loss =
          update                                                  "before-last"``
D5        validation problems come from the test pool (MNIST)     schedule: ``validation_pool =
                                                                  "test"``
D6        the quadratic LSTM's input shares memory with           ``lstm``: ``alias_grad``
          ``p.grad``: its first layer's input weights get a
          meta-gradient about 7x too large
eval      the MNIST LSTM, meta-trained at ``out_mul`` 0.1, is     variant: ``test_out_mul =
          evaluated at 1.0                                        1.0``
========  =====================================================  ==============================

``corrected`` (the default) is this project's protocol: every weight trains, the window sums
the losses after each update, the loss after the last step is reported, validation problems
come from the meta-training pool, the LSTM reads a gradient of its own and is evaluated as it
was trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..registry import Spec

#: the protocols, the default first.
PROTOCOLS = ("corrected", "reference")
#: the losses a report can give per problem: after the last step, or the one before it (D4).
REPORTED_LOSSES = ("last", "before-last")
#: what each protocol means, for the reports.
PROTOCOL_TEXT = {
    "corrected": "Protocol `corrected` (this project's): every weight of the learned optimizers "
                 "trains, a truncation sums the losses after each update, validation problems "
                 "come from the meta-training pool, the loss after the last step is reported.",
    "reference": "Protocol `reference` (the original code's): the MNIST HNN's carried q_dot "
                 "is cut from the meta-gradient (D1), a truncation sums the losses before each "
                 "update (D3), the loss before the last update is reported (D4), validation "
                 "problems come from the test pool (D5), the quadratic LSTM's input aliases the "
                 "optimizee's gradient (D6), the LSTM is evaluated at out_mul 1.0.",
}


def check_protocol(name: str) -> str:
    """``name`` if it is a protocol, else a ``ValueError`` that lists them."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    return name


def variant_under(protocol: str, spec: Spec,
                  settings: Mapping[str, Any]) -> tuple[Spec, dict[str, Any]]:
    """A learned optimizer's spec and its variant settings (schedule fields and
    ``test_out_mul``) under ``protocol``.

    ``reference`` sets, where they apply: ``detach_q_dot`` on an HNN with preprocessing (D1;
    the original only reads ``q_dot.data`` on its preprocessed path), ``alias_grad`` and
    ``test_out_mul = 1.0`` on the LSTM (D6, only without preprocessing: with it the original's
    LSTM reads a tensor of its own; and the notebook's evaluation), ``loss_window = "before"``
    (D3) and ``validation_pool = "test"`` (D5; a task without pools ignores it).
    ``corrected`` returns them unchanged.
    """
    spec, settings = dict(spec), dict(settings)
    if check_protocol(protocol) == "corrected":
        return spec, settings
    if spec.get("type") == "hnn" and spec.get("preprocessing"):
        spec["detach_q_dot"] = True
    if spec.get("type") == "lstm":
        if not spec.get("preprocessing"):  # with preprocessing it reads a tensor of its own
            spec["alias_grad"] = True
        settings["test_out_mul"] = 1.0
    settings["loss_window"] = "before"
    settings["validation_pool"] = "test"  # a task without pools (the quadratic) ignores it
    return spec, settings


def reported_loss(protocol: str, default: str = "last") -> str:
    """Which loss per problem the reports give under ``protocol`` (``default``: the sweep's
    own ``reported_loss``)."""
    return "before-last" if check_protocol(protocol) == "reference" else default


def reported_index(reported: str) -> int:
    """The index into a curve ``F(theta_1) .. F(theta_T)`` of the reported loss."""
    if reported not in REPORTED_LOSSES:
        raise ValueError(f"reported_loss must be one of {list(REPORTED_LOSSES)}, got "
                         f"{reported!r}")
    return -1 if reported == "last" else -2
