"""Running a sweep's cells in one process: ``Runner`` builds a plan's tasks and shared test
problems once, then runs one *job* at a time: a baseline cell, a learned cell, or the seeds of
one variant meta-trained as a group (``meta.group``), each writing the records of separate
cells. The engines (``experiments.engines``) hand jobs to runners, here or elsewhere.
"""

from __future__ import annotations

import time

import torch

from ..meta import evaluate, save_checkpoint
from ..meta.evaluate import check_memory, field_evaluations
from ..meta.group import stack_problems
from ..meta.tuning import choose
from ..optimizers.base import Optimizer
from ..registry import Spec, as_spec, build
from ..reporting.results import losses_record
from ..seeding import make_generator
from ..tasks.base import Task, build_task
from .folder import FORMAT
from .plan import Plan
from .protocols import reported_index
from .spec import Cell, Target
from .training import train_group, train_variant

__all__ = ["Job", "Runner"]

#: what one worker runs at a time: one cell, or seeds of one variant meta-trained as a group
Job = tuple[Cell, ...]


class Runner:
    """Runs the jobs of a plan in this process: builds the tasks and the shared test problems
    once, then meta-trains and evaluates one job (a cell, or a group of seeds) at a time."""

    def __init__(self, plan: Plan, *, device: torch.device, data_root: str | None = None,
                 compile: bool | None = None, threads: int = 1,
                 versions: dict | None = None) -> None:
        self.plan, self.device, self.compile = plan, device, compile
        self.folder = plan.folder
        self.threads, self.versions = threads, versions or {}
        sweep, steps = plan.sweep, plan.sizes["steps"]
        self.data_root = data_root
        context = {"data_root": data_root, "device": device}
        self.train_task = build_task(sweep.train, steps, **context)
        self.tasks = {}
        for t in sweep.targets:
            same = as_spec(t.task) == as_spec(sweep.train)
            self.tasks[t.label] = self.train_task if same else build_task(t.task, steps,
                                                                          **context)
        # targets watched during meta-training, on problems of the training task's pool
        self.monitors = {t.label: self.on_training_pool(t) for t in sweep.targets
                         if t.label in sweep.monitor}
        self.notes = sorted({n for task in [self.train_task, *self.tasks.values()]
                             if (n := getattr(task, "data_note", None))})
        # every method and seed runs on the same test problems of each target
        self.check_test_memory(1, "give the budget fewer test_problems")
        self.problems = {label: task.sample(plan.sizes["test_problems"],
                                            make_generator(sweep.test_seed, "test"), device)
                         for label, task in self.tasks.items()}

    def check_test_memory(self, members: int, fix: str) -> None:
        """Refuse, on the CPU, test problems of every target that ``members`` optimizers
        evaluated side by side cannot fit in memory (``meta.evaluate.check_memory``)."""
        if self.device.type != "cpu":
            return
        count = members * self.plan.sizes["test_problems"]
        for label, task in self.tasks.items():
            what = f"{count} test problems" + (f" ({members} seeds side by side)"
                                               if members > 1 else "")
            check_memory(task, count, f"[targets.{label}]: {what}", fix)

    def run(self, job: Job) -> list[dict]:
        """The records of a job's cells: one cell, or the seeds of one variant meta-trained
        as a group (``group_jobs``)."""
        start = time.perf_counter()
        records = self.run_learned(job) if job[0].learned else [self.run_baseline(job[0])]
        share = (time.perf_counter() - start) / len(job)
        for cell, record in zip(job, records):
            # a resumed cell's time includes its meta-training in the processes before this one
            earlier = record.pop("earlier_seconds", 0.0)
            record.update(format=FORMAT, method=cell.method, seed=cell.seed,
                          protocol=self.plan.protocol, reported_loss=self.plan.reported_loss,
                          seconds=share + earlier, device=str(self.device),
                          threads=self.threads, versions=self.versions)
            if len(job) > 1:
                record["group"] = {"seeds": [c.seed for c in job],
                                   "seconds": share * len(job)}
        return records

    def evaluate_all(self, optimizer: Optimizer, labels: list[str],
                     scale: float | None = None, members: int = 1) -> list[dict[str, dict]]:
        """Each member's records of ``labels``' test problems: ``optimizer`` is one optimizer
        (``members=1``) or a ``Stacked`` one, whose members run on copies of the problems."""
        out: list[dict[str, dict]] = [{} for _ in range(members)]
        index = reported_index(self.plan.reported_loss)
        for label in labels:
            begin = time.perf_counter()
            problems = self.problems[label]
            if members > 1:
                problems = stack_problems([problems] * members)
            losses = evaluate(optimizer, self.tasks[label], problems,
                              self.plan.sizes["steps"], scale=scale)
            seconds = (time.perf_counter() - begin) / members
            for member, part in zip(out, losses.chunk(members)):
                member[label] = {**losses_record(part, index), "seconds": seconds}
        return out

    def run_baseline(self, cell: Cell) -> dict:
        specs = {t.label: spec for t in self.plan.sweep.targets
                 if (spec := t.baseline(cell.method)) is not None}
        targets, tuning = {}, {}
        for target in self.plan.sweep.targets:
            if cell.method in target.tuned:
                tuning[target.label] = self.tune(target, specs[target.label])
                specs[target.label] = {**specs[target.label], "lr": tuning[target.label]["lr"]}
        for label, spec in specs.items():
            targets.update(self.evaluate_all(build(spec, "baseline"), [label])[0])
        return {"kind": "baseline", "spec": specs, "params": None, "nfe": None,
                "targets": targets, **({"tuning": tuning} if tuning else {})}

    def on_training_pool(self, target: Target) -> Task:
        """``target``'s task drawing its problems from the training task's pool, where the
        training task has one (the validation of watched targets, the tuning problems)."""
        train = self.plan.sweep.train
        pool = {"pool": train["pool"]} if "pool" in train else {}
        return build_task({**as_spec(target.task), **pool}, self.plan.sizes["steps"],
                          data_root=self.data_root, device=self.device)

    def tune(self, target: Target, spec: Spec) -> dict:
        """The learning rate of the baseline ``spec`` (without one) on ``target``: every rate of
        the sweep's grid on the same tuning problems, drawn apart from the test problems (from
        the training task's pool where it has one), the lowest mean reported loss chosen
        (``meta.tuning.choose``)."""
        sweep, steps = self.plan.sweep, self.plan.sizes["steps"]
        task = self.on_training_pool(target)
        problems = task.sample(self.plan.tuning_problems,
                               make_generator(sweep.test_seed, f"tuning/{target.label}"),
                               self.device)
        index = reported_index(self.plan.reported_loss)
        trials = {}
        for lr in sweep.tuning_grid:
            losses = evaluate(build({**spec, "lr": lr}, "baseline"), task, problems, steps)
            trials[lr] = float(losses[:, index].double().mean())
        return {**choose(trials), "problems": self.plan.tuning_problems,
                "pool": sweep.train.get("pool")}

    def run_learned(self, job: Job) -> list[dict]:
        """Meta-train a job's seeds of one variant (alone, or as one group), save each one's
        checkpoint and evaluate them on every target; one record per cell."""
        plan, folder = self.plan, self.folder
        method = job[0].method
        variant = plan.sweep.variant(method)
        spec, settings = plan.setup(variant)
        schedule = plan.schedule(variant)
        states = [folder.training_state(method, cell.seed) for cell in job]
        states[0].parent.mkdir(parents=True, exist_ok=True)
        estimator = settings.get("estimator")
        if len(job) == 1:
            one = train_variant(spec, self.train_task, schedule, seed=job[0].seed,
                                device=self.device, compile=self.compile, state_path=states[0],
                                resume=states[0].is_file(), monitors=self.monitors,
                                estimator=estimator)
            trained, evaluator = [one], one.evaluator
        else:
            # the members evaluate side by side
            self.check_test_memory(len(job), "run the seeds one by one (--no-group)")
            trained, evaluator = train_group(spec, self.train_task, schedule,
                                             seeds=[c.seed for c in job], device=self.device,
                                             compile=self.compile, state_paths=states,
                                             monitors=self.monitors)
        for cell, member in zip(job, trained):
            result = member.result
            save_checkpoint(folder.checkpoint(method, cell.seed), member.optimizer,
                            **({} if estimator is None else {"estimator": estimator}),
                            task=plan.sweep.train["type"], task_spec=plan.sweep.train,
                            sweep=plan.sweep.name, budget=plan.budget, seed=cell.seed,
                            schedule=schedule.to_dict(), best_epoch=result.best_epoch,
                            best_validation=result.best_validation)
        # evaluated with another out_mul than it was trained with, where the variant says so
        scale = settings.get("test_out_mul")
        targets = self.evaluate_all(evaluator, list(self.tasks), scale, len(job))
        first = next(iter(self.tasks))
        watched: list[dict] = [{} for _ in job]
        for label in self.monitors:
            # the oracle: the weights of the epoch that was best on this target's validation
            for member in trained:
                member.optimizer.load_state_dict(member.result.monitors[label]["state"])
            oracles = self.evaluate_all(evaluator, [label], scale, len(job))
            for member, oracle, target, mine in zip(trained, oracles, targets, watched):
                best = member.result.monitors[label]
                target[label]["oracle"] = {**oracle[label], "epoch": best["epoch"]}
                mine[label] = {"best_epoch": best["epoch"],
                               "best_validation": best["validation"],
                               "validation": [h["monitors"][label]
                                              for h in member.result.history]}
        records = []
        for member, target, mine, state in zip(trained, targets, watched, states):
            result = member.result
            member.optimizer.load_state_dict(result.best_state)
            state.unlink(missing_ok=True)
            records.append({
                "kind": "learned", "earlier_seconds": member.earlier_seconds,
                "spec": spec, "schedule": schedule.to_dict(),
                "test_out_mul": scale, "compiled": member.compiled,
                "params": member.optimizer.num_params(),
                "nfe": field_evaluations(member.optimizer, self.tasks[first],
                                         self.problems[first], plan.sizes["steps"]),
                "targets": target,
                "meta_training": {"seconds": result.seconds, "best_epoch": result.best_epoch,
                                  "best_validation": result.best_validation,
                                  "validation": [h["validation"] for h in result.history],
                                  "monitors": mine,
                                  "skipped_updates": result.skipped_updates,
                                  "diverged": member.diverged is not None}})
        return records
