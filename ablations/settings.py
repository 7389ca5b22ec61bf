"""The training tasks and evaluation targets the ablations share, and the paper's variants."""

from __future__ import annotations

from collections.abc import Callable

from common import Setting, Variant

from phys_l2o.optimizers import HNN, LSTMOptimizer
from phys_l2o.physics import PortHamiltonianField
from phys_l2o.presets import BASELINE_LR, PAPER_LEARNED
from phys_l2o.tasks import MNISTTask, QuadraticTask

PAPER_HNN = "hnn (paper)"


def quadratic_setting() -> Setting:
    task = QuadraticTask()
    return Setting("quadratic", task, {"quadratic": task}, {"quadratic": BASELINE_LR["quadratic"]})


def mnist_setting(data_root: str | None, device, nets: dict[str, tuple[str, int]] | None = None,
                  ) -> Setting:
    """Meta-train on the sigmoid 784-20-10 MLP; evaluate on ``nets`` (label -> activation, width).

    Baselines use the paper's sigmoid learning rates, and its ReLU ones on ReLU nets.
    """
    nets = nets or {"sigmoid": ("sigmoid", 20), "relu": ("relu", 20)}
    train = MNISTTask("sigmoid", 20, pool="train", data_root=data_root, device=device)
    targets = {label: MNISTTask(act, width, pool="test", data_root=data_root, device=device)
               for label, (act, width) in nets.items()}
    baselines = {label: BASELINE_LR["mnist-relu" if act == "relu" else "mnist-sigmoid"]
                 for label, (act, _) in nets.items()}
    return Setting("mnist", train, targets, baselines)


def hnn_variant(task: str, name: str = PAPER_HNN, *,
                field: Callable[[int], PortHamiltonianField] | None = None,
                **overrides) -> Variant:
    """The paper's HNN for ``task`` with its config changed by ``overrides`` and, optionally, a
    different field (a function of the feature width)."""
    preset = PAPER_LEARNED[task]["hnn"]
    config = {**preset["config"], **overrides}
    width = 2 if config["preprocessing"] else 1

    def build() -> HNN:
        return HNN(field=None if field is None else field(width), **config)

    return Variant(name, build, preset["unroll"], preset["meta_lr"])


def lstm_variant(task: str) -> Variant:
    preset = PAPER_LEARNED[task]["lstm"]
    return Variant("lstm", lambda: LSTMOptimizer(**preset["config"]), preset["unroll"],
                   preset["meta_lr"])
