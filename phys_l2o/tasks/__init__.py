"""Tasks: batched families of optimization problems (quadratic; MNIST MLP)."""

from .base import Problems, Task, select
from .mnist import MNISTDigits, MNISTTask, load_mnist, make_activation, resolve_data_root
from .quadratic import QuadraticTask

__all__ = [
    "MNISTDigits",
    "MNISTTask",
    "Problems",
    "QuadraticTask",
    "Task",
    "load_mnist",
    "make_activation",
    "resolve_data_root",
    "select",
]
