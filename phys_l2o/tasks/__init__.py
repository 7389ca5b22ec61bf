"""Tasks: batched families of optimization problems (quadratic; MNIST MLP; any ``nn.Module``).

The contract is in ``base``; the MNIST task (``mnist``) reads its digits through ``mnist_data``.
"""

from .base import Problems, Task, select
from .mnist import MNISTTask, make_activation
from .mnist_data import MNISTDigits, load_mnist, resolve_data_root
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
