"""The training tasks and evaluation targets the ablations share, and the paper's variants.

A variant is an optimizer spec (``phys_l2o.build``) with its meta-training settings.
"""

from __future__ import annotations

from typing import Any

from common import Setting, Variant

from phys_l2o import build
from phys_l2o.presets import PAPER_BASELINES, PAPER_FIELD, PAPER_LEARNED

PAPER_HNN = "hnn (paper)"


def quadratic_setting() -> Setting:
    task = build("quadratic")
    return Setting("quadratic", task, {"quadratic": task},
                   {"quadratic": PAPER_BASELINES["quadratic"]})


def mnist_setting(data_root: str | None, device, nets: dict[str, tuple[str, int]] | None = None,
                  ) -> Setting:
    """Meta-train on the sigmoid 784-20-10 MLP; evaluate on ``nets`` (label -> activation, width).

    Baselines use the paper's sigmoid learning rates, and its ReLU ones on ReLU nets.
    """
    nets = nets or {"sigmoid": ("sigmoid", 20), "relu": ("relu", 20)}
    where = {"data_root": data_root, "device": device}
    train = build({"type": "mnist", "activation": "sigmoid", "hidden": 20, "pool": "train"},
                  **where)
    targets = {label: build({"type": "mnist", "activation": act, "hidden": width,
                             "pool": "test"}, **where)
               for label, (act, width) in nets.items()}
    baselines = {label: PAPER_BASELINES["mnist-relu" if act == "relu" else "mnist-sigmoid"]
                 for label, (act, _) in nets.items()}
    return Setting("mnist", train, targets, baselines)


def field_spec(**replace: Any) -> dict:
    """The paper's field spec with pieces replaced (a spec or a name) or left out (``None``)."""
    unknown = set(replace) - (set(PAPER_FIELD) - {"type"})
    if unknown:
        raise ValueError(f"unknown pieces {sorted(unknown)}")
    spec = {**PAPER_FIELD, **replace}
    return {k: v for k, v in spec.items() if v is not None}


def hnn_variant(task: str, name: str = PAPER_HNN, **overrides: Any) -> Variant:
    """The paper's HNN for ``task`` with options of its spec changed by ``overrides``
    (``field=field_spec(...)``, ``readout=...``, ``preprocessing=...``, ...)."""
    preset = PAPER_LEARNED[task]["hnn"]
    return Variant(name, {**preset["optimizer"], **overrides}, preset["unroll"],
                   preset["meta_lr"])


def lstm_variant(task: str) -> Variant:
    preset = PAPER_LEARNED[task]["lstm"]
    return Variant("lstm", preset["optimizer"], preset["unroll"], preset["meta_lr"])
