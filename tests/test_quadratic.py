"""The batched quadratic task."""

import pytest
import torch

from phys_l2o.seeding import make_generator
from phys_l2o.tasks import QuadraticTask, select
from phys_l2o.tasks.base import Task


def test_sample_shapes_and_reproducibility():
    task = QuadraticTask()
    a = task.sample(7, make_generator(3, "test"))
    b = task.sample(7, make_generator(3, "test"))
    assert a["W"].shape == (7, 10, 10) and a["y"].shape == (7, 10)
    torch.testing.assert_close(a["W"], b["W"])
    assert not torch.equal(a["W"], task.sample(7, make_generator(4, "test"))["W"])
    assert torch.equal(task.init_params(a), torch.zeros(7, 10))
    with pytest.raises(ValueError):
        task.sample(0, make_generator(0, "x"))


def test_loss_and_analytic_gradient():
    task = QuadraticTask(dim=4)
    problems = task.sample(5, make_generator(0, "x"))
    params = torch.randn(5, 4)
    loss, grad = task.loss_and_grad(params, problems)
    w, y = problems["W"], problems["y"]
    expected = ((torch.einsum("bij,bj->bi", w, params) - y) ** 2).sum(-1)
    torch.testing.assert_close(loss, expected)
    auto_loss, auto_grad = Task.loss_and_grad(task, params, problems, 0)   # generic autograd
    torch.testing.assert_close(grad, auto_grad)
    assert not grad.requires_grad


def test_batched_loss_equals_one_at_a_time():
    task = QuadraticTask()
    problems = task.sample(4, make_generator(0, "x"))
    params = torch.randn(4, 10)
    loss, grad = task.loss_and_grad(params, problems)
    for i in range(4):
        l_i, g_i = task.loss_and_grad(params[i:i + 1], select(problems, slice(i, i + 1)))
        torch.testing.assert_close(l_i, loss[i:i + 1])
        torch.testing.assert_close(g_i, grad[i:i + 1])
