"""The GPU path (skipped without CUDA): the same steps as on the CPU, compiled and eager, with
no host synchronisation inside a trajectory, and data-parallel collectives over NCCL."""

from __future__ import annotations

import pytest
import torch

from phys_l2o.experiments.paper import paper_optimizer
from phys_l2o.meta import Schedule, evaluate, meta_train, rollout
from phys_l2o.seeding import make_generator
from phys_l2o.tasks import MNISTTask, QuadraticTask

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def tasks(mnist_test_only_root):
    return {"quadratic": QuadraticTask(),
            "mnist": MNISTTask("sigmoid", steps=20, data_root=mnist_test_only_root, device="cuda")}


@pytest.mark.parametrize("name", ["hnn", "lstm"])
@pytest.mark.parametrize("task_name", ["quadratic", "mnist"])
@pytest.mark.parametrize("compiled", [False, True])
def test_cuda_steps_equal_cpu_steps_without_host_synchronisation(name, task_name, compiled,
                                                                 mnist_test_only_root):
    cuda_task = tasks(mnist_test_only_root)[task_name]
    cpu_task = cuda_task if task_name == "quadratic" else MNISTTask(
        "sigmoid", steps=20, data_root=mnist_test_only_root)
    curves = {}
    for device, task in (("cpu", cpu_task), ("cuda", cuda_task)):
        optimizer = paper_optimizer(task_name, name, seed=0).to(device)
        if compiled and device == "cuda":
            optimizer = optimizer.compiled()
        problems = task.sample(4, make_generator(0, "test"), device)
        evaluate(optimizer, task, problems, 20)  # warm-up (compilation, CUDA graphs)
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("error")  # any host synchronisation raises
        try:
            curves[device] = evaluate(optimizer, task, problems, 20)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert curves["cuda"].is_cuda
    torch.testing.assert_close(curves["cuda"].cpu(), curves["cpu"], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", ["hnn", "lstm"])
def test_meta_training_on_cuda_lowers_the_loss(name):
    task = QuadraticTask()
    optimizer = paper_optimizer("quadratic", name, seed=0)
    schedule = Schedule(epochs=3, trajectories=5, meta_batch=16, steps=30, unroll=10,
                        validation_problems=16, meta_lr=0.003)
    result = meta_train(optimizer, task, schedule, device="cuda", progress=False, compile=True)
    assert next(optimizer.parameters()).is_cuda
    assert result.best_epoch > 0 and result.best_validation < result.history[0]["validation"]
    problems = task.sample(8, make_generator(0, "test"), "cuda")
    assert torch.isfinite(rollout(optimizer, task, problems, 30)).all()
