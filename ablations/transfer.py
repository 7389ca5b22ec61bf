"""Transfer beyond the paper: optimizers meta-trained on the sigmoid 784-20-10 MLP, evaluated
on nets with other activations (sigmoid, ReLU, tanh) and widths (20, 40).

    python ablations/transfer.py --budget smoke --out runs/ablations [--data-root DIR]

The table is a matrix of optimizer x target net.
"""

from __future__ import annotations

from common import main_arguments, run_ablation
from settings import hnn_variant, lstm_variant, mnist_setting

NETS = {f"{act}-{width}": (act, width) for width in (20, 40) for act in ("sigmoid", "relu", "tanh")}


def run(budget: str, device, out, data_root, mnist: bool = True) -> list[dict]:
    if not mnist:
        return []
    return [run_ablation("transfer-mnist", "Transfer: optimizer x target net (MNIST)",
                         mnist_setting(data_root, device, NETS),
                         [hnn_variant("mnist"), lstm_variant("mnist")], budget=budget,
                         device=device, out=out, matrix=True)]


if __name__ == "__main__":
    run(**main_arguments(__doc__))
