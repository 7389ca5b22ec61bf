"""Ablation of the port-Hamiltonian pieces: which parts of the paper's HNN matter?

    python ablations/pieces.py --budget smoke --out runs/ablations [--data-root DIR]

Variants: the paper's HNN; without dissipation; without control; identity inertia; a scalar
potential (a true Hamiltonian, dV/dq by autograd); positive-semidefinite dissipation;
preprocessing toggled; derivative normalization toggled; plus the LSTM and the baselines.
"""

from __future__ import annotations

from common import Variant, main_arguments, run_ablation
from settings import (
    field_spec,
    hnn_variant,
    lstm_variant,
    mnist_setting,
    quadratic_setting,
)

from phys_l2o.presets import PAPER_LEARNED


def variants(task: str) -> list[Variant]:
    paper = PAPER_LEARNED[task]["hnn"]["optimizer"]
    pre, norm = paper["preprocessing"], paper["normalize"]
    return [
        hnn_variant(task),
        hnn_variant(task, "no dissipation", field=field_spec(dissipation=None)),
        hnn_variant(task, "no control", field=field_spec(control=None)),
        hnn_variant(task, "identity inertia", field=field_spec(inverse_inertia=None)),
        hnn_variant(task, "scalar potential", field=field_spec(potential="scalar-potential-mlp")),
        hnn_variant(task, "PSD dissipation", field=field_spec(dissipation="psd-dissipation")),
        hnn_variant(task, "preprocessing " + ("off" if pre else "on"), preprocessing=not pre),
        hnn_variant(task, "normalization " + ("off" if norm else "on"), normalize=not norm),
        lstm_variant(task),
    ]


def run(budget: str, device, out, data_root, mnist: bool = True) -> list[dict]:
    reports = [run_ablation("pieces-quadratic", "Pieces of the field: quadratic",
                            quadratic_setting(), variants("quadratic"), budget=budget,
                            device=device, out=out)]
    if mnist:
        reports.append(run_ablation("pieces-mnist", "Pieces of the field: MNIST (sigmoid "
                                    "training, ReLU transfer)", mnist_setting(data_root, device),
                                    variants("mnist"), budget=budget, device=device, out=out))
    return reports


if __name__ == "__main__":
    run(**main_arguments(__doc__))
