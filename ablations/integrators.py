"""Ablation of the integrator: the paper's Euler read-out against full ODE solves.

    python ablations/integrators.py --budget smoke --out runs/ablations [--data-root DIR]

Gradient state (q = the gradient): Euler read-out (paper), rk4 and dopri5 over a unit
horizon. Parameter state (q = the parameters, the loss as potential, symplectic Euler):
the learned momentum system ``hnn-param``. Plus the LSTM and the baselines.
"""

from __future__ import annotations

from common import Variant, main_arguments, run_ablation
from settings import PAPER_HNN, hnn_variant, lstm_variant, mnist_setting, quadratic_setting

from phys_l2o.presets import PAPER_BASELINES, PAPER_LEARNED

# loose tolerances: one optimizer step needs no precise solve, and dopri5 is costly on MNIST
ODE_FLOWS = {"rk4": {"type": "rk4"}, "dopri5": {"type": "dopri5", "rtol": 1e-2, "atol": 1e-3}}


def variants(task: str) -> list[Variant]:
    hnn = PAPER_LEARNED[task]["hnn"]
    sgd = PAPER_BASELINES["quadratic" if task == "quadratic" else "mnist-sigmoid"]["sgd"]
    return [
        hnn_variant(task, f"{PAPER_HNN}: euler-readout"),
        *(hnn_variant(task, f"gradient state: {name}",
                      readout={"type": "flow-readout", "flow": flow})
          for name, flow in ODE_FLOWS.items()),
        Variant("parameter state: symplectic-euler",
                {"type": "hnn-param", "lr": sgd["lr"], "momentum": 0.9},
                hnn["unroll"], hnn["meta_lr"]),
        lstm_variant(task),
    ]


def run(budget: str, device, out, data_root, mnist: bool = True) -> list[dict]:
    reference = f"{PAPER_HNN}: euler-readout"
    reports = [run_ablation("integrators-quadratic", "Integrators: quadratic",
                            quadratic_setting(), variants("quadratic"), budget=budget,
                            device=device, out=out, reference=reference)]
    if mnist:
        reports.append(run_ablation("integrators-mnist", "Integrators: MNIST (sigmoid "
                                    "training, ReLU transfer)", mnist_setting(data_root, device),
                                    variants("mnist"), budget=budget, device=device, out=out,
                                    reference=reference))
    return reports


if __name__ == "__main__":
    run(**main_arguments(__doc__))
