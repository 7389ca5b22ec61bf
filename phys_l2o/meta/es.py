"""Evolution strategies: meta-gradients from perturbed copies of the weights, without backprop.

An estimator here evaluates a *population* of copies of the learned optimizer, member ``m``
with the weights ``theta + sigma * s_m * eps_k`` (``eps_k ~ N(0, I)`` over all trainable
weights, flattened; members come in antithetic pairs ``s_m = +1, -1``), on the same problems,
and turns their meta-objectives into a meta-gradient for ``MetaStep.gradients``:

* ``EvolutionStrategies``: one estimate per trajectory, from the objectives of the whole
  trajectory: ``g = sum_k (L+_k - L-_k) eps_k / (2 sigma K)`` over the ``K`` pairs. It
  estimates the gradient of the Gaussian-smoothed objective, unbiased for any horizon (no
  truncation), at a cost that grows with the number of weights (19 for the paper's HNN).
* ``PES``: persistent evolution strategies (Vicol, Metz and Sohl-Dickstein 2021): every
  ``unroll`` steps a fresh ``eps_k`` per pair; each particle keeps its optimizee parameters,
  its optimizer state and the sum ``xi_k`` of its pair's draws across the truncations, and
  ``g = sum_k xi_k (L+_k - L-_k) / (2 sigma K)`` (the antithetic form) steps the weights
  after each truncation. The truncation's ``g`` is unbiased for the gradient of its objective
  with respect to weights shared by all the truncations so far.

A member's objective (``objective``, one of the schedule's ``OBJECTIVES``) is its mean over
the steps run (``1 .. T``) and the problems of ``F(theta_t)`` (``"loss"``, or ``None``), or of
``log(F(theta_t) / F(theta_0))`` (``"log-ratio"``, scale-free across tasks; each term is
clamped into ``[-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT]`` and a non-finite one counts as
``LOG_RATIO_LIMIT``, so a diverged member is a large finite penalty). With ``"loss"`` a
diverged member makes the estimate non-finite and the ``MetaStep`` skips it.

Both estimators are registered (kind ``"estimator"``, names ``"es"`` and ``"pes"``), so a
composition is a value: ``build({"type": "pes", "unroll": 10, "population": 8})`` makes one,
``spec_of(estimator)`` gives its spec back, and its options are fixed once it is built.

**One batched program** (``Population``). The problems are replicated once per member along
the batch axis (one task call per step for the whole population) and the members step as one
``phys_l2o.optimizers.Stacked`` optimizer with their weights: ``torch.func.functional_call``
under ``torch.func.vmap`` over the member axis (the LSTM's written-out ``autograd.Function``
has a generated ``vmap`` rule). An optimizer whose step ``vmap`` cannot run (a custom
``autograd.Function`` without ``setup_context``; in-place writes into fresh tensors) is
stepped member by member instead, with a warning: same values, one step call per member. The
step is always the module's own, eager (a ``compiled()`` wrapper's compiled code is not
used).

Everything runs under ``torch.no_grad()``. The noise is drawn on the CPU from the training
state's generator (the one the problems are sampled from, seeded by the meta-training's seed
and saved with the state), so a run is reproducible whatever else its process drew, and a
resumed run equals an uninterrupted one. In a data-parallel run every rank draws the same
problems and the same noise from that generator, runs the whole population on its share of the
problems, and ``MetaStep`` averages the estimates: the estimate of one process with the whole
meta-batch (a test checks the weights of two ranks against one process). The pairs themselves
are not sharded across ranks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..checks import positive_int, positive_number
from ..optimizers.base import CompiledOptimizer, Optimizer, apply_update, step_scale
from ..optimizers.stacked import Stacked
from ..registry import register
from ..tasks.base import Problems, Task
from .estimators import GradientEstimator, MetaStep
from .state import OBJECTIVES

__all__ = ["EvolutionStrategies", "LOG_RATIO_LIMIT", "PES", "Population"]

#: the bound of a ``log-ratio`` term, and the penalty of a non-finite one.
LOG_RATIO_LIMIT = 100.0

def learned_module(optimizer: Optimizer) -> nn.Module:
    """The learned optimizer itself (the module of a ``compiled()`` wrapper)."""
    return optimizer.module if isinstance(optimizer, CompiledOptimizer) else optimizer


def trainable(module: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The weights the estimators perturb: those that require a gradient, in order."""
    return [(name, p) for name, p in module.named_parameters() if p.requires_grad]


def flat_weights(module: nn.Module) -> Tensor:
    """The trainable weights as one detached vector ``(dims,)``."""
    weights = trainable(module)
    if not weights:
        raise ValueError(f"{type(module).__name__} has no trainable weights to perturb")
    return torch.cat([p.detach().reshape(-1) for _, p in weights])


def per_weight(module: nn.Module, flat: Tensor) -> list[Tensor | None]:
    """A vector ``(dims,)`` as one tensor per weight of ``module.parameters()`` (``None`` for
    a frozen one): the layout of ``MetaStep.gradients``."""
    chunks = iter(flat.split([p.numel() for _, p in trainable(module)]))
    return [next(chunks).view_as(p) if p.requires_grad else None for p in module.parameters()]


def check_objective(objective: str | None) -> str:
    """``objective`` (one of ``OBJECTIVES``; ``None`` is ``"loss"``), refused with a
    ``ValueError`` when it is none of them."""
    if objective not in (None, *OBJECTIVES):
        raise ValueError(f"objective must be one of {list(OBJECTIVES)} or left out, got "
                         f"{objective!r}")
    return objective or "loss"


def check_options(population: int, sigma: float,
                  objective: str | None) -> tuple[int, float, str | None]:
    """The options shared by the estimators, refused with a ``ValueError`` when bad."""
    positive_int("population", population)
    if population % 2:
        raise ValueError(f"population must be even (antithetic pairs), got {population}")
    sigma = positive_number("sigma", sigma)
    check_objective(objective)
    return population, sigma, objective


class Population:
    """``members`` copies of a learned optimizer, each with its own weights, optimizee
    parameters and state, optimizing the same problems as one batched program (a ``Stacked``
    optimizer with the members' weights).

    Args:
        optimizer: the learned optimizer (or its compiled wrapper; its module is used).
        task: the problem family.
        problems: the batch of ``B`` problems every member optimizes.
        members: the population size ``M``.
        objective: the meta-objective each member accumulates (``OBJECTIVES``; ``None`` is
            ``"loss"``).
        vectorize: ``True``: step through ``vmap`` (fail if it cannot); ``False``: member
            by member; ``None``: ``vmap``, member by member where it fails (with a warning).
    """

    def __init__(self, optimizer: Optimizer, task: Task, problems: Problems, members: int, *,
                 objective: str | None = None, vectorize: bool | None = None) -> None:
        objective = check_objective(objective)
        self.module = learned_module(optimizer)
        self.scale = step_scale(self.module)
        self.task, self.members = task, positive_int("members", members)
        self.objective, self.vectorize = objective, vectorize
        self.named = trainable(self.module)
        with torch.no_grad():
            params = task.init_params(problems)
            self.batch, self.step_index = params.shape[0], 0
            loss, grad = task.loss_and_grad(params, problems, 0)
            self.problems = {k: v.repeat(members, *[1] * (v.dim() - 1))
                             for k, v in problems.items()}
            self.params, self.grad = params.repeat(members, 1), grad.repeat(members, 1)
            self.state = Stacked.copies(self.module, members).init_state(self.params,
                                                                          task.segments)
            self.initial_loss = loss.detach().view(1, -1)

    def _stack(self, weights: dict[str, Tensor]) -> Stacked:
        return Stacked.with_weights(self.module, weights, vectorize=self.vectorize)

    def run(self, weights: Tensor, stop: int) -> Tensor:
        """Step every member to step ``stop`` with the weights ``weights`` ``(members, dims)``
        (flattened like ``flat_weights``).

        Returns:
            Each member's objective over the steps run ``(members,)``.
        """
        if weights.shape != (self.members, sum(p.numel() for _, p in self.named)):
            raise ValueError(f"weights must be (members, dims), got {tuple(weights.shape)}")
        if stop <= self.step_index:
            raise ValueError(f"stop {stop} is not after the current step {self.step_index}")
        chunks = weights.split([p.numel() for _, p in self.named], dim=1)
        stack = self._stack({name: chunk.reshape(self.members, *p.shape)
                             for (name, p), chunk in zip(self.named, chunks)})
        total = weights.new_zeros(self.members)
        first = self.step_index
        with torch.no_grad():
            for t in range(first + 1, stop + 1):
                update, self.state = stack.step(self.params, self.grad, self.state)
                self.vectorize = stack.vectorize  # a fallback holds for the later runs
                self.params = apply_update(self.params, update, self.scale)
                loss, self.grad = self.task.loss_and_grad(self.params, self.problems, t)
                total += self._terms(loss.detach().view(self.members, self.batch)).mean(1)
        self.step_index = stop
        return total / (stop - first)

    def _terms(self, loss: Tensor) -> Tensor:
        if self.objective == "loss":
            return loss
        ratio = torch.log(loss / self.initial_loss)
        limit = LOG_RATIO_LIMIT
        return torch.nan_to_num(ratio, nan=limit, posinf=limit, neginf=-limit).clamp(-limit, limit)


@register("estimator", "es")
class EvolutionStrategies(GradientEstimator):
    """Antithetic evolution strategies over the whole trajectory: one meta-step per trajectory.

    Args:
        population: members, an even number (``population / 2`` antithetic pairs).
        sigma: the scale of the perturbations of the weights.
        objective: a member's meta-objective (``OBJECTIVES``; ``None`` is ``"loss"``; see
            the module).
        vectorize: how the population is stepped (see ``Population``).
    """

    def __init__(self, population: int = 8, sigma: float = 0.01,
                 objective: str | None = None, *, vectorize: bool | None = None) -> None:
        self.population, self.sigma, self.objective = check_options(population, sigma,
                                                                    objective)
        self.vectorize = vectorize

    def __repr__(self) -> str:
        return (f"EvolutionStrategies(population={self.population}, sigma={self.sigma}, "
                f"objective={self.objective!r})")

    def estimate(self, optimizer: Optimizer, task: Task, problems: Problems, steps: int,
                 generator: torch.Generator | None = None) -> Tensor:
        """The meta-gradient estimate ``(dims,)`` over the trajectory, flattened like
        ``flat_weights``; draws ``population / 2`` noise vectors from ``generator`` (a CPU
        generator; default: the global one)."""
        positive_int("steps", steps)
        theta = flat_weights(learned_module(optimizer))
        pairs = self.population // 2
        eps = torch.randn(pairs, theta.numel(), generator=generator,
                          dtype=theta.dtype).to(theta.device)
        members = Population(optimizer, task, problems, self.population,
                             objective=self.objective, vectorize=self.vectorize)
        with torch.no_grad():
            values = members.run(theta + self.sigma * torch.cat([eps, -eps]), steps)
            return (values[:pairs] - values[pairs:]) @ eps / (2 * self.sigma * pairs)

    def trajectory(self, optimizer: Optimizer, task: Task, problems: Problems, steps: int,
                   meta_step: MetaStep) -> None:
        grad = self.estimate(optimizer, task, problems, steps, meta_step.state.generator)
        meta_step.gradients(per_weight(learned_module(optimizer), grad))


@register("estimator", "pes")
class PES(GradientEstimator):
    """Persistent evolution strategies over truncations of ``unroll`` steps, antithetic; one
    meta-step per truncation (the last may be shorter).

    Args:
        unroll: steps per truncation.
        population: particles, an even number (``population / 2`` antithetic pairs).
        sigma: the scale of the perturbations of the weights.
        objective: a particle's meta-objective on a truncation (``OBJECTIVES``): its mean
            over the truncation's steps and the problems (``None`` is ``"loss"``).
        vectorize: how the particles are stepped (see ``Population``).
    """

    def __init__(self, unroll: int = 10, population: int = 8, sigma: float = 0.01,
                 objective: str | None = None, *, vectorize: bool | None = None) -> None:
        if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
            raise ValueError(f"meta-training needs a truncation length >= 1, got {unroll}")
        self.unroll = unroll
        self.population, self.sigma, self.objective = check_options(population, sigma,
                                                                    objective)
        self.vectorize = vectorize

    def __repr__(self) -> str:
        return (f"PES(unroll={self.unroll}, population={self.population}, "
                f"sigma={self.sigma}, objective={self.objective!r})")

    def trajectory(self, optimizer: Optimizer, task: Task, problems: Problems, steps: int,
                   meta_step: MetaStep) -> None:
        positive_int("steps", steps)
        module = learned_module(optimizer)
        pairs = self.population // 2
        particles = Population(optimizer, task, problems, self.population,
                               objective=self.objective, vectorize=self.vectorize)
        xi: Tensor | None = None
        for start in range(0, steps, self.unroll):
            theta = flat_weights(module)
            eps = torch.randn(pairs, theta.numel(), generator=meta_step.state.generator,
                              dtype=theta.dtype).to(theta.device)
            xi = eps if xi is None else xi + eps
            with torch.no_grad():
                values = particles.run(theta + self.sigma * torch.cat([eps, -eps]),
                                       min(start + self.unroll, steps))
                grad = (values[:pairs] - values[pairs:]) @ xi / (2 * self.sigma * pairs)
            if not meta_step.gradients(per_weight(module, grad)):
                break
