"""Any ``nn.Module`` family as a task: a model factory, a data set and a loss, batched over
problems with ``torch.func``.

A problem is one freshly initialized model (``model()``) trained on its own random
minibatches of ``(inputs, targets)``. The parameters of a batch of problems are one tensor
``(batch, coords)``, packed in the order of ``model().named_parameters()`` (one segment per
parameter tensor); the loss of every problem at once is

    loss[b] = loss_fn(functional_call(model, theta[b], x[b]), y[b])        (batch,)

mapped over the problems with ``torch.func.vmap``. Gradients come from autograd through that
map, so ``meta_train``, ``evaluate`` and ``LearnedOptim`` take such a task unchanged.

:meth:`ModuleTask.final_losses` scores every problem's parameters on fixed examples: the first
``eval_examples`` of the training data and, where the task has them, of the held-out data.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from ..checks import positive_int
from .base import Problems, Task, minibatch_indices, minibatch_order

#: problem-examples scored at once by :meth:`ModuleTask.final_losses` (bounds its memory).
EVAL_CHUNK = 16384


class ModuleTask(Task):
    """Problems made of a model family, a data set and a loss.

    Args:
        model: builds one freshly initialized model (its weights drawn from torch's global
            random state, which the task seeds per problem). The model should hold no buffer
            that changes in training (no ``BatchNorm`` in training mode): it is run in
            ``eval`` mode.
        inputs: the data set's inputs ``(N, ...)``; a minibatch is ``inputs[index]``.
        targets: the matching targets ``(N, ...)``.
        loss: ``loss(model(x), y)``, a scalar: the mean over the examples (default:
            cross-entropy).
        batch_size: examples per minibatch.
        steps: optimizer steps a problem supports (it holds ``steps + 1`` minibatches).
        name: the task's name in reports.
        heldout: held-out ``(inputs, targets)``, never drawn into a minibatch: scored by
            :meth:`final_losses` only.
        eval_examples: examples of each data set that :meth:`final_losses` scores (the first
            ones).

    Example:
        >>> task = ModuleTask(lambda: nn.Linear(4, 3), torch.randn(64, 4),
        ...                   torch.randint(0, 3, (64,)), batch_size=8, steps=10)
        >>> task.segments
        (12, 3)
    """

    def __init__(self, model: Callable[[], nn.Module], inputs: Tensor, targets: Tensor,
                 loss: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy, *,
                 batch_size: int = 128, steps: int = 100, name: str = "module",
                 heldout: tuple[Tensor, Tensor] | None = None,
                 eval_examples: int = 2048) -> None:
        positive_int("batch_size", batch_size)
        positive_int("steps", steps)
        positive_int("eval_examples", eval_examples)
        if isinstance(model, nn.Module) or not callable(model):
            raise TypeError(f"model must be a function that builds a fresh model (every problem "
                            f"starts from its own), e.g. `lambda: nn.Linear(4, 3)` or a class, "
                            f"not {'a model' if isinstance(model, nn.Module) else repr(model)}")
        for what, value in (("inputs", inputs), ("targets", targets)):
            if not isinstance(value, Tensor):
                raise TypeError(f"{what} must be a tensor with one example per row, got "
                                f"{type(value).__name__} (use torch.as_tensor)")
        if len(inputs) != len(targets):
            raise ValueError(f"inputs and targets hold different numbers of examples "
                             f"({len(inputs)} and {len(targets)})")
        if heldout is not None:
            if not isinstance(heldout, (tuple, list)) or len(heldout) != 2:
                raise ValueError("heldout must be a pair (inputs, targets) of tensors")
            if len(heldout[0]) != len(heldout[1]) or len(heldout[0]) < 1:
                raise ValueError(f"the held-out inputs and targets must hold the same number "
                                 f"(>= 1) of examples, got {len(heldout[0])} and "
                                 f"{len(heldout[1])}")
            heldout = (heldout[0], heldout[1])
        if len(inputs) < batch_size:
            raise ValueError(f"the data set holds {len(inputs)} examples, fewer than a "
                             f"minibatch of {batch_size}")
        self.model_factory = model
        self.template = model().eval()
        if not isinstance(self.template, nn.Module):
            raise TypeError(f"model() must return an nn.Module, got "
                            f"{type(self.template).__name__}")
        self.names = [n for n, _ in self.template.named_parameters()]
        self.shapes = [p.shape for _, p in self.template.named_parameters()]
        if not self.names:
            raise ValueError("the model has no parameters to optimize")
        self.segments = tuple(p.numel() for _, p in self.template.named_parameters())
        try:  # the model, the data and the loss fit together: found now, not at the first loss
            with torch.no_grad():
                value = loss(self.template(inputs[:2]), targets[:2])
        except Exception as error:  # noqa: BLE001 - any failure is a mismatch to report
            raise ValueError(f"the model and the loss cannot take the data (inputs "
                             f"{tuple(inputs.shape)} {inputs.dtype}, targets "
                             f"{tuple(targets.shape)} {targets.dtype}): {error}") from error
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise ValueError(f"the loss must return one number per minibatch, got "
                             f"{getattr(value, 'shape', type(value).__name__)}")
        self.inputs, self.targets = inputs, targets
        self.loss_fn = loss
        self.batch_size, self.steps, self.name = batch_size, steps, name
        self.heldout, self.eval_examples = heldout, eval_examples
        self._data: dict[torch.device, tuple[Tensor, Tensor]] = {}
        self._heldout: dict[torch.device, tuple[Tensor, Tensor]] = {}
        self._templates: dict[torch.device, nn.Module] = {}

    def __repr__(self) -> str:
        return (f"ModuleTask({type(self.template).__name__}, examples={len(self.inputs)}, "
                f"coords={self.num_coords}, batch_size={self.batch_size}, steps={self.steps})")

    def describe(self) -> dict:
        """The task's settings and the sizes of its data (for ``results.json``)."""
        return {"name": self.name, "module": type(self.template).__name__,
                "coords": self.num_coords, "examples": len(self.inputs),
                "heldout_examples": 0 if self.heldout is None else len(self.heldout[0]),
                "eval_examples": self.eval_examples, "steps": self.steps,
                "batch_size": self.batch_size}

    def sample(self, num_problems: int, generator: torch.Generator,
               device: torch.device | str = "cpu") -> Problems:
        """Initial weights ``params (batch, coords)`` (a fresh ``model()`` each, seeded from
        ``generator``) and minibatch indices ``batches (batch, steps + 1, batch_size)``."""
        positive_int("num_problems", num_problems)
        params, batches = [], []
        for _ in range(num_problems):
            seed = int(torch.randint(2**62, (1,), generator=generator))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = self.model_factory()
            params.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
            batches.append(minibatch_order(len(self.inputs), self.steps, self.batch_size,
                                           generator))
        return {"params": torch.stack(params).to(device),
                "batches": torch.stack(batches).to(device)}

    def init_params(self, problems: Problems) -> Tensor:
        return problems["params"].clone()

    def unpack(self, params: Tensor) -> dict[str, Tensor]:
        """The parameters of every problem by name, each ``(batch, *shape)``."""
        chunks = params.split(self.segments, dim=-1)
        return {name: chunk.reshape(params.shape[0], *shape)
                for name, chunk, shape in zip(self.names, chunks, self.shapes, strict=True)}

    def _data_on(self, device: torch.device) -> tuple[Tensor, Tensor]:
        if device not in self._data:
            self._data[device] = (self.inputs.to(device), self.targets.to(device))
        return self._data[device]

    def _template_on(self, device: torch.device) -> nn.Module:
        template = self._templates.get(device)
        if template is None:  # its buffers (if any) where the parameters are
            template = copy.deepcopy(self.template).to(device)
            self._templates[device] = template
        return template

    def minibatch(self, problems: Problems, step: int) -> tuple[Tensor, Tensor]:
        """Inputs ``(batch, batch_size, ...)`` and targets of ``step`` for every problem."""
        index = minibatch_indices(problems, step, "ModuleTask")
        inputs, targets = self._data_on(index.device)
        return inputs[index], targets[index]

    def loss(self, params: Tensor, problems: Problems, step: int) -> Tensor:
        x, y = self.minibatch(problems, step)
        template = self._template_on(params.device)

        def one(weights: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
            return self.loss_fn(functional_call(template, weights, (x,)), y)

        return vmap(one)(self.unpack(params), x, y)

    def final_losses(self, params: Tensor, problems: Problems) -> dict[str, Tensor]:
        """Detached losses ``(batch,)`` of every problem on the first ``eval_examples``
        examples of the training data (``"train"``) and of the held-out data (``"heldout"``,
        where the task has some). The same examples for every problem; run in chunks of
        examples (the loss must be a mean over the examples)."""
        device = params.device
        with torch.no_grad():
            losses = {"train": self._score(params.detach(), *self._data_on(device))}
            if self.heldout is not None:
                if device not in self._heldout:
                    self._heldout[device] = (self.heldout[0].to(device),
                                             self.heldout[1].to(device))
                losses["heldout"] = self._score(params.detach(), *self._heldout[device])
        return losses

    def _score(self, params: Tensor, inputs: Tensor, targets: Tensor) -> Tensor:
        template = self._template_on(params.device)
        weights = self.unpack(params)
        count = min(self.eval_examples, len(inputs))
        chunk = max(1, EVAL_CHUNK // params.shape[0])

        def one(weights: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
            return self.loss_fn(functional_call(template, weights, (x,)), y)

        score = vmap(one, in_dims=(0, None, None))
        total = params.new_zeros(params.shape[0])
        for start in range(0, count, chunk):
            stop = min(start + chunk, count)
            total += score(weights, inputs[start:stop], targets[start:stop]) * (stop - start)
        return total / count
