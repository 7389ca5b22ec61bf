"""Tasks: batched families of optimization problems (quadratic; MNIST MLP)."""

from .base import Problems, Task, select
from .quadratic import QuadraticTask

__all__ = ["Problems", "QuadraticTask", "Task", "select"]
