"""A meta-trained optimizer in any PyTorch training loop: a ``torch.optim.Optimizer``, and the
pretrained weights shipped with the package.

    opt = phys_l2o.optim.from_pretrained("hnn-mnist", model.parameters())
    for x, y in loader:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

Every parameter group goes through the learned network as one tensor program: its
parameters (those with a gradient) are packed into one ``(1, coords)`` vector whose segments
are the parameter tensors, exactly as a task packs a problem's parameters, so the steps are
those of ``phys_l2o.rollout`` on the same problem. A group's ``lr`` is the scale its updates
are applied with (``phys_l2o.optimizers.advance``):

    theta' = theta + lr * update

where ``update`` is the learned network's output; the default ``lr`` is the ``out_mul``
the network was trained with (its ``step_scale``), so ``torch.optim.lr_scheduler`` works as
with any optimizer. As in ``torch.optim``, a group's ``lr`` may be ``0.0`` (a frozen group, or
a warm-up that starts from zero): its parameters stay and its state still advances.
The per-coordinate state (the HNN's ``q_dot``, the LSTM's ``h`` and ``c``) is kept per
parameter in ``self.state``, so ``state_dict``/``load_state_dict`` resume a run exactly.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .meta.checkpoint import load_checkpoint
from .optimizers.base import CompiledOptimizer, LearnedOptimizer, advance
from .pretrained import is_pretrained, load_pretrained, pretrained_info, pretrained_names

__all__ = ["LearnedOptim", "from_pretrained", "load_pretrained", "pretrained_info",
           "pretrained_names", "resolve_optimizer"]

def resolve_optimizer(optimizer: LearnedOptimizer | str | os.PathLike) -> LearnedOptimizer:
    """A learned optimizer from a module (or its ``compiled()`` wrapper), a pretrained name or
    a checkpoint path."""
    if isinstance(optimizer, CompiledOptimizer):
        return optimizer.module
    if isinstance(optimizer, LearnedOptimizer):
        return optimizer
    if is_pretrained(optimizer):
        return load_pretrained(optimizer)
    if isinstance(optimizer, (str, os.PathLike)):
        if Path(optimizer).is_file():
            return load_checkpoint(optimizer)[0]
        raise FileNotFoundError(f"{os.fspath(optimizer)!r} is neither a pretrained name "
                                f"({', '.join(pretrained_names())}) nor a checkpoint file")
    raise TypeError(f"optimizer must be a learned optimizer module, a pretrained name or a "
                    f"checkpoint path, got {type(optimizer).__name__}")


class LearnedOptim(torch.optim.Optimizer):
    """A meta-trained optimizer as a ``torch.optim.Optimizer``.

    Args:
        params: the parameters (or parameter groups) to optimize, as for any optimizer.
        optimizer: a learned optimizer module (``HNN``, ``LSTMOptimizer``, ...), a pretrained
            name (``pretrained_names()``) or a checkpoint path. A frozen copy is used: the
            step builds no autograd graph and never changes the module given.
        **group_defaults: defaults of every group; ``lr`` (the scale of the step, default the
            network's ``out_mul``) is the only one.

    Parameters without a gradient are skipped; a sparse gradient is refused. Each group is
    one problem to the learned network, with one segment per parameter tensor: it was
    meta-trained on problems of a given kind and horizon (``pretrained_info``), and may fare
    worse far from them.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]],
                 optimizer: LearnedOptimizer | str | os.PathLike, **group_defaults: Any) -> None:
        source = resolve_optimizer(optimizer)
        network = copy.deepcopy(source)
        network.eval().requires_grad_(False)
        unknown = sorted(set(group_defaults) - {"lr"})
        if unknown:
            raise TypeError(f"LearnedOptim takes only `lr` as a group default, got {unknown}")
        #: the step scale the network was trained with (its ``out_mul``; 1 if it has none).
        self.trained_lr = network.step_scale
        defaults = {"lr": group_defaults.get("lr", self.trained_lr)}
        check_lr(defaults["lr"])
        super().__init__(params, defaults)
        self.network = network
        weights = list(network.parameters())
        self._dtype = weights[0].dtype if weights else torch.get_default_dtype()

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if "lr" in param_group:
            check_lr(param_group["lr"])
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One step of every group; returns ``closure()``'s loss when a closure is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._step_group(params, group["lr"])
        return loss

    def _step_group(self, params: list[Tensor], lr: float) -> None:
        for p in params:
            if p.grad.is_sparse:
                raise RuntimeError("LearnedOptim does not support sparse gradients; use dense "
                                   "gradients (e.g. nn.Embedding(sparse=False))")
        device = params[0].device
        if any(p.device != device for p in params):
            raise RuntimeError("all parameters of a group must be on one device")
        self.network.to(device)
        sizes = [p.numel() for p in params]
        flat = torch.cat([p.reshape(-1) for p in params]).to(self._dtype).unsqueeze(0)
        grad = torch.cat([p.grad.reshape(-1) for p in params]).to(self._dtype).unsqueeze(0)
        state = self.network.state_from_coordinates(self._coordinates(params, flat, sizes),
                                                    flat, sizes)
        new, state = advance(self.network, flat, grad, state, scale=lr)
        fields = self.network.state_to_coordinates(state)
        per_param = {key: value.split(sizes) for key, value in fields.items()}
        for i, (p, value) in enumerate(zip(params, new[0].split(sizes), strict=True)):
            p.copy_(value.view_as(p))
            self.state[p] = {key: parts[i].clone() for key, parts in per_param.items()}

    def _coordinates(self, params: list[Tensor], flat: Tensor,
                     sizes: list[int]) -> dict[str, Tensor]:
        """The group's per-coordinate state: each parameter's saved slice, and a fresh one
        (from ``init_state``) only for parameters that have none yet."""
        new = [i for i, p in enumerate(params) if not self.state[p]]
        fresh: dict[str, list[Tensor]] = {}
        if new:
            values = flat[0].split(sizes)
            subset = torch.cat([values[i] for i in new]).unsqueeze(0)
            subset_sizes = [sizes[i] for i in new]
            fields = self.network.state_to_coordinates(
                self.network.init_state(subset, subset_sizes))
            fresh = {key: list(value.split(subset_sizes)) for key, value in fields.items()}
        if len(new) == len(params):
            return {key: torch.cat(parts) for key, parts in fresh.items()}
        keys = next(iter(self.state[p] for p in params if self.state[p]))
        slices: dict[str, list[Tensor]] = {key: [] for key in keys}
        for i, p in enumerate(params):
            for key in keys:
                slices[key].append(fresh[key].pop(0) if i in new else
                                   self.state[p][key].to(device=flat.device, dtype=self._dtype))
        return {key: torch.cat(parts) for key, parts in slices.items()}


def check_lr(lr: Any) -> float:
    """A group's ``lr``: a finite number ``>= 0`` (``0.0`` freezes the group's parameters)."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) \
            or lr < 0:
        raise ValueError(f"lr must be a finite number >= 0 (0 freezes a group), got {lr!r}")
    return float(lr)


def from_pretrained(name: str, params: Iterable[Tensor] | Iterable[dict[str, Any]],
                    **group_defaults: Any) -> LearnedOptim:
    """``LearnedOptim`` with the pretrained optimizer ``name`` (see ``pretrained_names``)."""
    pretrained_info(name)  # a clear error for an unknown name
    return LearnedOptim(params, name, **group_defaults)
