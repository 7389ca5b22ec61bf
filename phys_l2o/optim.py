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
parameter in ``self.state`` (views of one flat tensor per group, which the next step reads
without copying), with the step count, so ``state_dict``/``load_state_dict`` resume a run
exactly.

A group's ``weight_decay`` is decoupled, as AdamW's; no other option exists, and an unknown
one is refused. Large groups step through ``torch.compile`` (``compile="auto"``), an
optimizer whose coordinates do not interact steps them in chunks (bounded memory), and a run
past the horizon the network was meta-trained for gets one ``HorizonWarning``.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_map_only

from .checks import positive_int, positive_number
from .meta.checkpoint import load_checkpoint
from .optimizers.base import CompiledOptimizer, LearnedOptimizer, advance, compile_available
from .pretrained import is_pretrained, load_pretrained, pretrained_info, pretrained_names

__all__ = ["HorizonWarning", "LearnedOptim", "from_pretrained", "load_pretrained",
           "pretrained_info", "pretrained_names", "resolve_optimizer"]


def resolve_optimizer(optimizer: LearnedOptimizer | str | os.PathLike) -> LearnedOptimizer:
    """A learned optimizer from a module (or its ``compiled()`` wrapper), a pretrained name or
    a checkpoint path."""
    return _resolve(optimizer)[0]


def _resolve(optimizer: Any) -> tuple[LearnedOptimizer, int | None]:
    """The learned optimizer and the horizon it was meta-trained for (``None``: unknown)."""
    if isinstance(optimizer, CompiledOptimizer):
        return optimizer.module, None
    if isinstance(optimizer, LearnedOptimizer):
        return optimizer, None
    if is_pretrained(optimizer):
        return load_pretrained(optimizer), pretrained_info(optimizer).get("horizon")
    if isinstance(optimizer, (str, os.PathLike)):
        if Path(optimizer).is_file():
            module, metadata = load_checkpoint(optimizer)
            return module, (metadata.get("schedule") or {}).get("steps")
        raise FileNotFoundError(f"{os.fspath(optimizer)!r} is neither a pretrained name "
                                f"({', '.join(pretrained_names())}) nor a checkpoint file")
    raise TypeError(f"optimizer must be a learned optimizer module, a pretrained name or a "
                    f"checkpoint path, got {type(optimizer).__name__}")


class HorizonWarning(UserWarning):
    """A learned optimizer ran past the number of steps it was meta-trained for."""


#: the options of a parameter group (besides ``params``), with their defaults; ``lr``'s
#: default is the network's trained step scale.
GROUP_OPTIONS = ("lr", "weight_decay")
#: keys ``torch.optim.Optimizer`` itself puts in a group.
TORCH_GROUP_KEYS = ("params", "param_names")
#: a group's step is compiled (``compile="auto"``) from this many coordinates: below, the
#: compiler's seconds per new shape cost more than it saves.
COMPILE_FROM = 1 << 16
#: coordinates per chunk of a coordinatewise optimizer's step (its memory is that of a chunk).
CHUNK = 1 << 18


class LearnedOptim(torch.optim.Optimizer):
    """A meta-trained optimizer as a ``torch.optim.Optimizer``.

    Args:
        params: the parameters (or parameter groups) to optimize, as for any optimizer.
        optimizer: a learned optimizer module (``HNN``, ``LSTMOptimizer``, ...), a pretrained
            name (``pretrained_names()``) or a checkpoint path. A frozen copy is used: the
            step builds no autograd graph and never changes the module given.
        compile: ``"auto"`` (the default) runs the step of every group of at least
            ``COMPILE_FROM`` coordinates through ``torch.compile`` where a C++ compiler is
            present and every piece of the network can be compiled, and in eager mode
            otherwise (``compiled`` says which); ``True`` compiles every group's step and
            raises where it cannot; ``False`` never compiles. A compiled step costs seconds
            (tens of seconds for a large network) at its first call per group shape, and agrees
            with eager mode to float rounding.
        horizon: the number of steps the network was meta-trained for; past it, one
            ``HorizonWarning``. By default that of a pretrained optimizer (its manifest) or of
            a checkpoint (its schedule); ``None`` for a module. ``0`` turns the warning off.
        **group_defaults: defaults of every group: ``lr`` (the scale of the step, default the
            network's ``out_mul``) and ``weight_decay`` (decoupled, as AdamW's: each step
            first multiplies the parameters by ``1 - lr * weight_decay``; default 0).

    Raises:
        TypeError: a group option other than ``lr`` and ``weight_decay`` (it is refused, never
            ignored).
        ValueError: an ``lr`` or ``weight_decay`` that is not a finite number ``>= 0``.

    Parameters without a gradient and empty ones are skipped; sparse and complex gradients are
    refused. Each group is one problem to the learned network, with one segment per parameter
    tensor, except that tensors smaller than the network's ``min_segment`` are normalized
    together (a one-element tensor normalized on its own is only a sign). It was meta-trained
    on problems of a given kind and horizon (``pretrained_info``), and may fare worse far from
    them.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]],
                 optimizer: LearnedOptimizer | str | os.PathLike, *,
                 compile: bool | str = "auto", horizon: int | None | str = "trained",
                 **group_defaults: Any) -> None:
        source, trained_horizon = _resolve(optimizer)
        network = copy.deepcopy(source)
        network.eval().requires_grad_(False)
        check_group_options(group_defaults, "a group default")
        #: the step scale the network was trained with (its ``out_mul``; 1 if it has none).
        self.trained_lr = network.step_scale
        defaults = {"lr": group_defaults.get("lr", self.trained_lr),
                    "weight_decay": group_defaults.get("weight_decay", 0.0)}
        check_lr(defaults["lr"])
        positive_number("weight_decay", defaults["weight_decay"], zero=True)
        if compile not in ("auto", True, False):
            raise ValueError(f"compile must be 'auto', True or False, got {compile!r}")
        self.network = network
        #: the meta-training horizon (``None``: unknown, no warning).
        self.horizon = trained_horizon if horizon == "trained" else horizon
        if self.horizon is not None:
            positive_int("horizon", self.horizon, zero=True)
        self._compiled = self._compiler(compile, optimizer)
        self._warned = False
        #: the last step's per-coordinate state of each group, flat, and the views of it kept
        #: in ``self.state``: the next step reads the flat tensors while the views are current
        self._flat: dict[int, tuple[list[int], dict[str, Tensor], dict[str, list[Tensor]]]] = {}
        super().__init__(params, defaults)
        weights = list(network.parameters())
        self._dtype = weights[0].dtype if weights else torch.get_default_dtype()

    def _compiler(self, compile: bool | str, given: Any) -> CompiledOptimizer | None:
        if compile is False:
            return None
        blocked = self.network.uncompilable_pieces()
        if compile == "auto" and (blocked or not compile_available()):
            return None
        # no CUDA graphs by default: their outputs, which the state keeps across steps, are
        # overwritten at the next replay
        mode = given.mode if isinstance(given, CompiledOptimizer) and given.mode else "default"
        return self.network.compiled(mode=mode)  # raises (compile=True) with the reason

    @property
    def compiled(self) -> bool:
        """Whether large groups step through ``torch.compile`` (see ``compile``)."""
        return self._compiled is not None

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if isinstance(param_group, dict):
            check_group_options({k: v for k, v in param_group.items()
                                 if k not in TORCH_GROUP_KEYS}, "a parameter group")
            if "lr" in param_group:
                check_lr(param_group["lr"])
            if "weight_decay" in param_group:
                positive_number("weight_decay", param_group["weight_decay"], zero=True)
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """``torch.optim.Optimizer.load_state_dict``, refusing a state this network did not
        write (another optimizer's, or one of another learned optimizer).

        Raises:
            ValueError: a parameter's saved state lacks the network's per-coordinate fields,
                has others, or does not have one value per coordinate.
        """
        expected = set(self._state_keys())
        sizes = [p.numel() for group in self.param_groups for p in group["params"]]
        for index, saved in state_dict.get("state", {}).items():
            keys = set(saved) - {"step"}
            numel = sizes[index] if isinstance(index, int) and index < len(sizes) else None
            wrong = [key for key in keys & expected
                     if not isinstance(saved[key], Tensor) or saved[key].shape[:1] != (numel,)]
            if keys != expected or wrong:
                raise ValueError(f"this state was not written by a LearnedOptim with this "
                                 f"network: parameter {index} holds {sorted(keys)}, the network "
                                 f"keeps {sorted(expected)} with one value per coordinate"
                                 f"{f' (wrong shapes: {wrong})' if wrong else ''}; load the "
                                 "state_dict of the same learned optimizer, or start this one "
                                 "afresh")
        super().load_state_dict(state_dict)

    def _state_keys(self) -> list[str]:
        """The names of the network's per-coordinate state fields."""
        probe = torch.zeros(1, 2, dtype=self._dtype, device=next(
            iter(self.network.parameters()), torch.zeros(())).device)
        return list(self.network.state_to_coordinates(self.network.init_state(probe, [2])))

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One step of every group; returns ``closure()``'s loss when a closure is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for index, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None and p.numel() > 0]
            if params:
                self._step_group(index, params, group["lr"], group["weight_decay"])
        return loss

    def _step_group(self, index: int, params: list[Tensor], lr: float,
                    weight_decay: float) -> None:
        check_params(params)
        if weight_decay:
            torch._foreach_mul_(params, 1.0 - lr * weight_decay)
        self.network.to(params[0].device)
        params, segments = normalization_order(params, self.network)
        sizes = [p.numel() for p in params]
        flat = torch.cat([p.reshape(-1) for p in params]).to(self._dtype).unsqueeze(0)
        grad = torch.cat([p.grad.reshape(-1) for p in params]).to(self._dtype).unsqueeze(0)
        fields = self._fields(index, params, flat, sizes)
        n = flat.shape[1]
        optimizer = self._compiled if self._compiled is not None and n >= COMPILE_FROM \
            else self.network
        if self.network.coordinatewise and n > CHUNK:
            # coordinates are independent: chunks bound the step's memory to a chunk's
            new = torch.empty_like(flat)
            for start in range(0, n, CHUNK):
                part = slice(start, min(start + CHUNK, n))
                chunk = {key: value[part] for key, value in fields.items()}
                state = self.network.state_from_coordinates(chunk, flat[:, part],
                                                            [part.stop - start])
                new[:, part], state = advance(optimizer, flat[:, part], grad[:, part], state,
                                              scale=lr)
                for key, value in self.network.state_to_coordinates(state).items():
                    fields[key][part] = value   # in place: the old chunk is no longer read
        else:
            state = self.network.state_from_coordinates(fields, flat, segments)
            new, state = advance(optimizer, flat, grad, state, scale=lr)
            fields = self.network.state_to_coordinates(state)
        views = {key: list(value.split(sizes)) for key, value in fields.items()}
        for i, (p, value, old) in enumerate(zip(params, new[0].split(sizes), flat[0].split(sizes),
                                                strict=True)):
            if p.dtype == value.dtype:
                p.copy_(value.view_as(p))
            else:  # a parameter of another precision keeps it: only the step is rounded
                p.add_((value - old).view_as(p).to(p.dtype))
            state_p = self.state[p]
            state_p["step"] = state_p.get("step", torch.tensor(0.0)) + 1
            state_p.update({key: parts[i] for key, parts in views.items()})
        self._flat[index] = ([id(p) for p in params], fields, views)
        self._check_horizon(int(self.state[params[0]]["step"]))

    def _check_horizon(self, steps: int) -> None:
        if self.horizon and steps > self.horizon and not self._warned:
            self._warned = True
            warnings.warn(f"this learned optimizer was meta-trained for {self.horizon} steps "
                          f"and has now taken {steps}: past its horizon its updates may stop "
                          "helping (the loss may stall or rise); watch the loss, or switch to "
                          "a hand-designed optimizer for the rest of the run", HorizonWarning,
                          stacklevel=3)

    def _fields(self, index: int, params: list[Tensor], flat: Tensor,
                sizes: list[int]) -> dict[str, Tensor]:
        """The group's per-coordinate state as flat tensors: the last step's own when every
        parameter still holds its views of them (no copy), else each parameter's saved slice,
        and a fresh one (from ``init_state``) for parameters that have none yet."""
        cached = self._flat.get(index)
        if cached is not None and cached[0] == [id(p) for p in params] and all(
                self.state[p].get(key) is parts[i] for i, p in enumerate(params)
                for key, parts in cached[2].items()):
            return cached[1]
        new = [i for i, p in enumerate(params) if not self.state[p]]
        if len(new) == len(params):  # a first step: the network's own fresh state, no copy
            return self.network.state_to_coordinates(self.network.init_state(flat, sizes))
        fresh: dict[str, list[Tensor]] = {}
        if new:
            values = flat[0].split(sizes)
            subset = torch.cat([values[i] for i in new]).unsqueeze(0)
            subset_sizes = [sizes[i] for i in new]
            fields = self.network.state_to_coordinates(
                self.network.init_state(subset, subset_sizes))
            fresh = {key: list(value.split(subset_sizes)) for key, value in fields.items()}
        keys = fresh.keys() if fresh else [k for k in self.state[params[0]] if k != "step"]
        slices: dict[str, list[Tensor]] = {key: [] for key in keys}
        for i, p in enumerate(params):
            for key in keys:
                slices[key].append(fresh[key].pop(0) if i in new else
                                   self.state[p][key].to(device=flat.device, dtype=self._dtype))
        fields = {key: torch.cat(parts) for key, parts in slices.items()}
        # in the network's own layout (the LSTM's is (hidden, coords)), which chunks read and
        # write without transposing
        state = self.network.state_from_coordinates(fields, flat, sizes)
        return self.network.state_to_coordinates(tree_map_only(Tensor, Tensor.contiguous, state))


def normalization_order(params: list[Tensor],
                        network: LearnedOptimizer) -> tuple[list[Tensor], list[int]]:
    """A group's parameters in the order they are packed, and the segments the network
    normalizes over.

    Each tensor is its own segment, except those smaller than the network's ``min_segment``:
    they are packed last and normalized together; if they are still too few together, with
    the last larger tensor.
    """
    least = network.min_segment
    small = [p for p in params if p.numel() < least]
    if not small or network.coordinatewise:
        return params, [p.numel() for p in params]
    large = [p for p in params if p.numel() >= least]
    segments = [p.numel() for p in large] + [sum(p.numel() for p in small)]
    if segments[-1] < least and large:
        segments[-2:] = [segments[-2] + segments[-1]]
    return large + small, segments


def check_params(params: list[Tensor]) -> None:
    """Refuse what the learned step cannot take: sparse or complex gradients, several
    devices."""
    for p in params:
        if p.grad.is_sparse:
            raise RuntimeError("LearnedOptim does not support sparse gradients; use dense "
                               "gradients (e.g. nn.Embedding(sparse=False))")
        if p.is_complex():
            raise RuntimeError("LearnedOptim does not support complex parameters (the learned "
                               "network acts on real coordinates); view them as real pairs "
                               "with torch.view_as_real, or use another optimizer for them")
    device = params[0].device
    if any(p.device != device for p in params):
        raise RuntimeError("all parameters of a group must be on one device")


def check_group_options(options: dict[str, Any], where: str) -> None:
    """Refuse options ``LearnedOptim`` does not have (never ignore them)."""
    unknown = sorted(set(options) - set(GROUP_OPTIONS))
    if unknown:
        raise TypeError(f"LearnedOptim takes only {' and '.join(map(repr, GROUP_OPTIONS))} "
                        f"in {where}, got {unknown}: a learned optimizer has no "
                        f"{'/'.join(unknown)} of its own (an unknown option is refused, never "
                        "ignored)")


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
