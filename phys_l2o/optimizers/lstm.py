"""The coordinatewise LSTM optimizer of Andrychowicz et al. (2016).

Two stacked ``LSTMCell``s of 20 units and a ``Linear(20 -> 1)`` shared by every coordinate;
input the (optionally preprocessed) gradient; ``theta' = theta + out_mul * output``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from .base import LearnedOptimizer, State
from .preprocessing import make_preprocessing


class LSTMOptimizer(LearnedOptimizer):
    """5221 weights with the paper's settings, 5301 with preprocessing.

    Args:
        preprocessing: apply the L2L gradient preprocessing (input width 2 instead of 1).
        hidden: units per LSTM layer.
        layers: stacked ``LSTMCell``s.
        out_mul: scale of the parameter step.
    """

    name = "lstm"

    def __init__(self, *, preprocessing: bool = False, hidden: int = 20, layers: int = 2,
                 out_mul: float = 1.0) -> None:
        super().__init__()
        self.preprocess = make_preprocessing(preprocessing)
        sizes = [self.preprocess.width] + [hidden] * layers
        self.cells = nn.ModuleList(nn.LSTMCell(a, b) for a, b in zip(sizes, sizes[1:]))
        self.head = nn.Linear(hidden, 1)
        self.hidden = hidden
        self.out_mul = out_mul
        self._config = {"preprocessing": preprocessing, "hidden": hidden, "layers": layers,
                        "out_mul": out_mul}

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def init_state(self, params: Tensor, segments: Sequence[int]) -> State:
        return {f"{kind}{i}": params.new_zeros(params.numel(), self.hidden)
                for i in range(len(self.cells)) for kind in "hc"}

    def step(self, params: Tensor, grad: Tensor, state: State) -> tuple[Tensor, State]:
        x = self.preprocess(grad.reshape(-1, 1))    # (batch * coords, d)
        new_state: State = {}
        for i, cell in enumerate(self.cells):
            h, c = cell(x, (state[f"h{i}"], state[f"c{i}"]))
            new_state[f"h{i}"], new_state[f"c{i}"] = h, c
            x = h
        update = self.head(x).reshape(params.shape)
        return params + self.out_mul * update, new_state
