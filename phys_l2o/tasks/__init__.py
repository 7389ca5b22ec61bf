"""Tasks: batched families of optimization problems (quadratic; MNIST MLP; any ``nn.Module``)."""

from .base import Problems, Task, select
from .mnist import MNISTDigits, MNISTTask, load_mnist, make_activation, resolve_data_root
from .module import ModuleTask
from .quadratic import QuadraticTask

__all__ = [
    "MNISTDigits",
    "MNISTTask",
    "ModuleTask",
    "Problems",
    "QuadraticTask",
    "Task",
    "load_mnist",
    "make_activation",
    "resolve_data_root",
    "select",
]
