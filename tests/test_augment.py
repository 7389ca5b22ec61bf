"""The augmented task: random reparametrizations of a wrapped task, and random horizons."""

import math

import pytest
import torch

import phys_l2o
from phys_l2o import build, spec_of
from phys_l2o.seeding import make_generator
from phys_l2o.tasks import AugmentedTask, QuadraticTask
from phys_l2o.tasks.base import select

QUADRATIC = {"type": "quadratic", "dim": 6}
TABULAR = {"type": "tabular", "dataset": "wine", "hidden": 8, "batch_size": 8, "steps": 5}


def augmented(inner: dict, **options) -> AugmentedTask:
    return build({"type": "augmented", "task": inner, **options}, "task")


def coordinate_scales(task: AugmentedTask, problems: dict) -> torch.Tensor:
    """Each problem's scale per coordinate, expanded by hand from the segments."""
    return torch.cat([problems["scales"][:, i:i + 1].expand(-1, size)
                      for i, size in enumerate(task.segments)], dim=1)


@pytest.mark.parametrize("inner", [QUADRATIC, TABULAR], ids=["quadratic", "tabular"])
def test_the_reparametrized_problem_is_the_wrapped_one_at_the_mapped_point(inner):
    for loss_scale in ([1.0, 1.0], [0.25, 4.0]):
        task = augmented(inner, param_scale=[0.1, 10.0], loss_scale=loss_scale)
        problems = task.sample(4, make_generator(0, "augment"))
        wrapped = task.inner_problems(problems)
        s, c = coordinate_scales(task, problems), problems["loss_scale"]
        p = torch.randn(4, task.num_coords)
        step = 2
        expected = task.task.loss(p, wrapped, step)
        if loss_scale == [1.0, 1.0]:
            assert torch.equal(c, torch.ones(4))
        else:
            assert not torch.allclose(c, torch.ones(4))
        torch.testing.assert_close(task.loss(p / s, problems, step), c * expected)

        # the gradient the optimizer sees: c * s * dF/dp, and autograd through `loss` agrees
        _, inner_grad = task.task.loss_and_grad(p, wrapped, step)
        q = (p / s).requires_grad_(True)
        (auto,) = torch.autograd.grad(task.loss(q, problems, step).sum(), q)
        loss, grad = task.loss_and_grad((p / s).detach(), problems, step)
        torch.testing.assert_close(loss, c * expected)
        torch.testing.assert_close(grad, c.unsqueeze(-1) * s * inner_grad)
        torch.testing.assert_close(grad, auto)
        assert not loss.requires_grad and not grad.requires_grad


@pytest.mark.parametrize("inner", [QUADRATIC, TABULAR], ids=["quadratic", "tabular"])
def test_init_params_and_final_losses_are_the_wrapped_task_s(inner):
    task = augmented(inner, param_scale=[0.1, 10.0], loss_scale=[0.25, 4.0])
    problems = task.sample(3, make_generator(1, "augment"))
    wrapped = task.inner_problems(problems)
    s = coordinate_scales(task, problems)
    q0 = task.init_params(problems)
    torch.testing.assert_close(q0 * s, task.task.init_params(wrapped))
    q = torch.randn_like(q0)
    final, expected = task.final_losses(q, problems), task.task.final_losses(q * s, wrapped)
    assert final.keys() == expected.keys()  # the tabular task has held-out data too
    for key in expected:  # the original problem's losses: no loss factor
        torch.testing.assert_close(final[key], expected[key])


def test_the_loss_keeps_its_graph_to_the_parameters():
    task = augmented(QUADRATIC, param_scale=[0.5, 2.0], loss_scale=[0.5, 2.0])
    problems = task.sample(3, make_generator(2, "augment"))
    q = task.init_params(problems).add(0.3).requires_grad_(True)
    loss, grad = task.loss_and_grad(q, problems, 0)
    assert loss.requires_grad and not grad.requires_grad
    loss.sum().backward()
    torch.testing.assert_close(q.grad, grad)


def test_the_wrapped_problems_come_first_and_the_scales_after():
    inner = QuadraticTask(dim=6)
    task = AugmentedTask(inner, param_scale=[0.1, 10.0], loss_scale=[0.5, 2.0])
    problems = task.sample(5, make_generator(3, "augment"))
    own = inner.sample(5, make_generator(3, "augment"))
    assert set(problems) == {"inner.W", "inner.y", "scales", "loss_scale"}
    for key, value in own.items():
        assert torch.equal(problems["inner." + key], value)

    tabular = augmented(TABULAR, param_scale=[0.1, 10.0])
    problems = tabular.sample(6, make_generator(3, "augment"))
    own = tabular.task.sample(6, make_generator(3, "augment"))
    for key, value in own.items():
        assert torch.equal(problems["inner." + key], value)
    scales = problems["scales"]
    assert scales.shape == (6, len(tabular.segments)) == (6, 4)
    assert bool((scales >= 0.1).all()) and bool((scales <= 10.0).all())
    assert len(scales.unique()) == scales.numel()  # differ across problems and segments
    again = tabular.sample(6, make_generator(3, "augment"))
    assert torch.equal(again["scales"], scales)
    assert not torch.equal(tabular.sample(6, make_generator(4, "augment"))["scales"], scales)
    assert torch.equal(problems["loss_scale"], torch.ones(6))
    # a sub-batch is selected like any batch of problems
    one = select(problems, [2])
    torch.testing.assert_close(tabular.loss(tabular.init_params(one), one, 0),
                               tabular.loss(tabular.init_params(problems), problems, 0)[2:3])


def test_the_scales_are_log_uniform():
    task = augmented(QUADRATIC, param_scale=[0.01, 100.0], loss_scale=[0.1, 10.0])
    problems = task.sample(4000, make_generator(5, "augment"))
    for draws, (lo, hi) in ((problems["scales"], (0.01, 100.0)),
                            (problems["loss_scale"], (0.1, 10.0))):
        logs = draws.log()
        assert abs(float(logs.mean()) - 0.5 * (math.log(lo) + math.log(hi))) < 0.1
        below = float((draws < math.sqrt(lo * hi)).float().mean())
        assert 0.45 < below < 0.55  # half of them under the geometric mean


@pytest.mark.parametrize("inner", [QUADRATIC, TABULAR], ids=["quadratic", "tabular"])
def test_identity_ranges_give_the_wrapped_task(inner):
    task = augmented(inner)
    generator, own_generator = make_generator(6, "augment"), make_generator(6, "augment")
    problems = task.sample(3, generator)
    own = task.task.sample(3, own_generator)
    assert torch.equal(generator.get_state(), own_generator.get_state())  # nothing drawn
    params = task.init_params(problems)
    assert torch.equal(params, task.task.init_params(own))
    params = params + 0.1 * torch.randn_like(params)
    for step in (0, 3):
        loss, grad = task.loss_and_grad(params, problems, step)
        own_loss, own_grad = task.task.loss_and_grad(params, own, step)
        assert torch.equal(loss, own_loss) and torch.equal(grad, own_grad)
        assert torch.equal(task.loss(params, problems, step), task.task.loss(params, own, step))
    for key, value in task.task.final_losses(params, own).items():
        assert torch.equal(task.final_losses(params, problems)[key], value)


def test_horizon_steps():
    task = augmented(QUADRATIC, horizon=[5, 20])
    draws = [task.horizon_steps(make_generator(seed, "horizon"), 100) for seed in range(200)]
    assert min(draws) == 5 and max(draws) == 20  # the whole range, ends included
    assert draws == [task.horizon_steps(make_generator(seed, "horizon"), 100)
                     for seed in range(200)]
    short = {task.horizon_steps(make_generator(seed, "horizon"), 8) for seed in range(100)}
    assert short == {5, 6, 7, 8}  # never past the trajectory's steps
    assert task.horizon_steps(make_generator(0, "horizon"), 5) == 5
    with pytest.raises(ValueError, match="min_steps"):
        task.horizon_steps(make_generator(0, "horizon"), 4)
    plain = augmented(QUADRATIC)
    generator = make_generator(0, "horizon")
    state = generator.get_state()
    assert plain.horizon_steps(generator, 37) == 37
    assert torch.equal(generator.get_state(), state)  # no horizon: nothing drawn


def test_spec_round_trip_and_nested_inner_spec():
    spec = {"type": "augmented", "task": {"type": "quadratic", "dim": 5},
            "param_scale": [0.5, 2.0], "loss_scale": [0.1, 10.0], "horizon": [10, 50]}
    task = build(spec, "task")
    assert spec_of(task) == spec
    assert spec_of(build(spec_of(task), "task")) == spec
    assert task.name == "augmented-quadratic" and task.segments == (5,)
    described = task.describe()
    assert described["task"] == {"name": "quadratic", "dim": 5}
    assert described["param_scale"] == [0.5, 2.0] and described["horizon"] == [10, 50]

    from_object = AugmentedTask(QuadraticTask(dim=3), (0.5, 2.0))
    assert spec_of(from_object) == {"type": "augmented", "task": {"type": "quadratic", "dim": 3},
                                    "param_scale": [0.5, 2.0], "loss_scale": [1.0, 1.0]}
    assert spec_of(build(spec_of(from_object), "task")) == spec_of(from_object)
    assert task.with_pool("test") is task  # a quadratic has no pools
    with pytest.raises(AttributeError):
        task.param_scale = (1.0, 1.0)


def test_context_reaches_the_wrapped_task_and_with_pool_rewraps(mnist_test_only_root):
    spec = {"type": "augmented", "param_scale": [0.5, 2.0], "loss_scale": [0.5, 2.0],
            "task": {"type": "mnist", "hidden": 4, "steps": 5, "batch_size": 8}}
    task = build(spec, "task", data_root=mnist_test_only_root, download=False, device="cpu")
    assert spec_of(task) == spec  # the context stays out of the spec
    handed = task.task._spec_arguments
    assert handed["data_root"] == mnist_test_only_root and handed["download"] is False
    assert task.task.pool == "train"
    test = task.with_pool("test")
    assert isinstance(test, AugmentedTask) and test.task.pool == "test"
    assert (test.param_scale, test.loss_scale, test.horizon) == \
        (task.param_scale, task.loss_scale, task.horizon)
    assert spec_of(test) == {**spec, "task": {**spec_of(task.task), "pool": "test"}}
    problems = test.sample(2, make_generator(0, "augment"))
    loss, grad = test.loss_and_grad(test.init_params(problems), problems, 0)
    assert loss.shape == (2,) and grad.shape == (2, test.num_coords)
    assert bool(torch.isfinite(loss).all())


def test_meta_training_through_the_wrapper():
    torch.manual_seed(0)
    task = build({"type": "augmented", "task": {"type": "quadratic", "dim": 5},
                  "param_scale": [0.5, 2.0]}, "task")
    optimizer = phys_l2o.HNN()
    before = {k: v.clone() for k, v in optimizer.state_dict().items()}
    schedule = phys_l2o.Schedule(epochs=1, trajectories=2, steps=10, unroll=5,
                                 validation_problems=4)
    result = phys_l2o.meta_train(optimizer, task, schedule, progress=False, keep_last=True)
    assert len(result.history) == 2
    assert all(math.isfinite(record["validation"]) for record in result.history)
    assert result.skipped_updates == 0
    assert any(not torch.equal(before[k], v) for k, v in result.last_state.items())


@pytest.mark.parametrize("options, match", [
    ({"param_scale": [0.0, 1.0]}, "param_scale"),
    ({"param_scale": [2.0, 1.0]}, "param_scale"),
    ({"param_scale": [1.0]}, "param_scale"),
    ({"param_scale": [1.0, float("inf")]}, "param_scale"),
    ({"param_scale": "1, 2"}, "param_scale"),
    ({"loss_scale": [-1.0, 1.0]}, "loss_scale"),
    ({"loss_scale": [True, 2.0]}, "loss_scale"),
    ({"loss_scale": [1.0, float("nan")]}, "loss_scale"),
    ({"horizon": [0, 10]}, "horizon"),
    ({"horizon": [10, 5]}, "horizon"),
    ({"horizon": [5.0, 10]}, "horizon"),
    ({"horizon": [5, 10, 20]}, "horizon"),
])
def test_bad_options_raise(options, match):
    with pytest.raises(ValueError, match=match):
        augmented(QUADRATIC, **options)


def test_a_missing_or_wrong_task_raises():
    with pytest.raises(ValueError, match="task"):
        AugmentedTask(None)
    with pytest.raises(ValueError, match="task"):
        AugmentedTask(torch.nn.Linear(2, 2))
    with pytest.raises(phys_l2o.registry.SpecError):
        augmented({"type": "hnn"})
