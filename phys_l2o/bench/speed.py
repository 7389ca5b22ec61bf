"""What a step costs at model scale: the time of ``optimizer.step()`` and the size of the
optimizer's state on an MLP of about a million parameters, against Adam's.

A benchmark that prints figures, not a test: the times depend on the machine and on what else
runs on it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

#: the model of the measurement: 784-1024-256-10, 1,068,810 parameters.
WIDTHS = (784, 1024, 256, 10)

Factory = Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer]


def model_of(widths: tuple[int, ...] = WIDTHS) -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in the optimizer's per-parameter state."""
    total, seen = 0, set()

    def walk(value) -> None:
        nonlocal total
        if isinstance(value, torch.Tensor):
            if value.data_ptr() not in seen:
                seen.add(value.data_ptr())
                total += value.numel() * value.element_size()
        elif isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif hasattr(value, "__dict__"):
            walk(vars(value))

    walk(dict(optimizer.state))
    return total


def step_costs(optimizers: Mapping[str, Factory], *, steps: int = 5, batch: int = 128,
               widths: tuple[int, ...] = WIDTHS) -> dict[str, dict]:
    """Each optimizer's median step time (ms) and state size on the same model and minibatch.

    Args:
        optimizers: a factory per name, called with the model's parameters.
        steps: timed steps per optimizer, after one warm-up step.
        batch: examples of the minibatch (random inputs and labels, fixed seed).
        widths: the MLP's layer widths.
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, widths[0], generator=generator)
    y = torch.randint(widths[-1], (batch,), generator=generator)
    out = {}
    for name, factory in optimizers.items():
        torch.manual_seed(0)
        model = model_of(widths)
        optimizer = factory(model.parameters())
        times = []
        for step in range(steps + 1):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            start = time.perf_counter()
            optimizer.step()
            if step:  # the first step is a warm-up (state allocation, lazy set-up)
                times.append(time.perf_counter() - start)
        out[name] = {"step_ms": 1000 * statistics.median(times),
                     "state_bytes": state_bytes(optimizer), "steps": steps,
                     "params": sum(p.numel() for p in model.parameters()),
                     "threads": torch.get_num_threads()}
    return out


def default_factories(learned: Iterable[tuple[str, str]]) -> dict[str, Factory]:
    """Adam (lr 1e-3), SGD with momentum and each learned optimizer ``(name, source)`` (a
    pretrained name or a checkpoint path) as a ``LearnedOptim``."""
    from ..optim import LearnedOptim, resolve_optimizer

    factories: dict[str, Factory] = {
        "Adam": lambda p: torch.optim.Adam(p, lr=1e-3),
        "SGD+momentum": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9)}
    for name, source in learned:
        network = resolve_optimizer(source)
        factories[name] = lambda p, network=network: LearnedOptim(p, network)
    return factories
