"""Small tabular data sets bundled with scikit-learn (no download), as :class:`ModuleTask` s.

The examples are shuffled with a fixed seed (``SPLIT_SEED``) and split into a training part
(minibatches) and a held-out part (``heldout_fraction``); the features are standardized with
the training part's mean and standard deviation. The model is a linear map (``hidden = 0``:
logistic or linear regression) or an MLP with one hidden layer.

| dataset | examples | features | problem |
|---|---|---|---|
| ``digits`` | 1,797 | 64 | 10 classes (8x8 digits), cross-entropy |
| ``wine`` | 178 | 13 | 3 classes, cross-entropy |
| ``breast_cancer`` | 569 | 30 | 2 classes, cross-entropy |
| ``diabetes`` | 442 | 10 | regression (standardized target), mean squared error |
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import positive_int
from ..registry import register
from .mnist import make_activation
from .module import ModuleTask

#: the seed of the shuffle that splits the examples into training and held-out parts.
SPLIT_SEED = 0
#: the data sets, by name: scikit-learn's loader and whether the target is a class.
DATASETS = {"digits": ("load_digits", True), "wine": ("load_wine", True),
            "breast_cancer": ("load_breast_cancer", True), "diabetes": ("load_diabetes", False)}


def flat_mse(output: Tensor, target: Tensor) -> Tensor:
    """Mean squared error of a one-output regression (``output (n, 1)``, ``target (n,)``)."""
    return F.mse_loss(output.squeeze(-1), target)


def standardize(train: Tensor, heldout: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Both parts scaled by the training part's mean and standard deviation (a column with
    none is only centred); also returns that mean and standard deviation."""
    mean, std = train.mean(0), train.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (train - mean) / std, (heldout - mean) / std, mean, std


@register("task", "tabular")
class TabularTask(ModuleTask):
    """Logistic/linear regression or a one-hidden-layer MLP on a scikit-learn data set.

    Args:
        dataset: ``"digits"`` (default), ``"wine"``, ``"breast_cancer"`` (classification) or
            ``"diabetes"`` (regression).
        hidden: hidden units; ``0``: no hidden layer (a linear model).
        activation: a ``torch.nn`` activation by name, after the hidden layer.
        batch_size: examples per minibatch.
        steps: optimizer steps a problem supports.
        heldout_fraction: the part of the examples held out, in ``(0, 1)``.
    """

    def __init__(self, dataset: str = "digits", hidden: int = 0, activation: str = "relu", *,
                 batch_size: int = 32, steps: int = 100, heldout_fraction: float = 0.2) -> None:
        if not isinstance(dataset, str) or dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(DATASETS)}")
        self.dataset = dataset
        self.hidden = positive_int("hidden", hidden, zero=True)
        self.activation = type(make_activation(activation)).__name__.lower()
        ok = (not isinstance(heldout_fraction, bool)
              and isinstance(heldout_fraction, (int, float)) and 0 < heldout_fraction < 1)
        if not ok:
            raise ValueError(f"heldout_fraction must be a number in (0, 1), got "
                             f"{heldout_fraction!r}")
        self.heldout_fraction = float(heldout_fraction)

        import sklearn
        from sklearn import datasets

        loader, self.classification = DATASETS[dataset]
        x, y = getattr(datasets, loader)(return_X_y=True)
        self.sklearn_version = sklearn.__version__
        x = torch.as_tensor(x, dtype=torch.float64)
        y = torch.as_tensor(y, dtype=torch.int64 if self.classification else torch.float64)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
        held = max(1, math.floor(len(x) * self.heldout_fraction))
        if held >= len(x):
            raise ValueError(f"heldout_fraction={heldout_fraction} leaves no training examples")
        train, test = order[held:], order[:held]
        train_x, test_x, _, _ = standardize(x[train], x[test])
        train_y, test_y = y[train], y[test]
        if self.classification:
            self.features, self.outputs = x.shape[1], int(y.max()) + 1
            loss = F.cross_entropy
        else:
            mean, std = train_y.mean(), train_y.std()
            train_y, test_y = (train_y - mean) / std, (test_y - mean) / std
            self.features, self.outputs = x.shape[1], 1
            loss = flat_mse
            train_y, test_y = train_y.float(), test_y.float()
        kind = ("logistic" if self.classification else "linear") if hidden == 0 else \
            f"mlp-{self.activation}-{hidden}"
        super().__init__(self._model, train_x.float(), train_y, loss, batch_size=batch_size,
                         steps=steps, name=f"{dataset}-{kind}",
                         heldout=(test_x.float(), test_y))

    def _model(self) -> nn.Module:
        if self.hidden == 0:
            return nn.Linear(self.features, self.outputs)
        return nn.Sequential(nn.Linear(self.features, self.hidden),
                             make_activation(self.activation),
                             nn.Linear(self.hidden, self.outputs))

    def describe(self) -> dict:
        """The task's settings and data provenance (for ``results.json``)."""
        loader = DATASETS[self.dataset][0]
        return {**super().describe(), "dataset": self.dataset, "hidden": self.hidden,
                "activation": self.activation, "heldout_fraction": self.heldout_fraction,
                "features": self.features, "outputs": self.outputs,
                "problem": "classification" if self.classification else "regression",
                "data": f"sklearn.datasets.{loader} (bundled with scikit-learn "
                        f"{self.sklearn_version})", "split_seed": SPLIT_SEED}
