"""Tasks: batched families of optimization problems (quadratics; MNIST models; scikit-learn's
tabular data sets; a synthetic sequence task; any ``nn.Module``).

The contract is in ``base``; the MNIST task (``mnist``) reads its digits through ``mnist_data``;
the held-out families are in ``families`` (MNIST), ``tabular``, ``sequence`` and ``quadratic``;
distributions over tasks (``mixture``) and their random reparametrizations (``augment``) are
what meta-training for generalization runs on.
"""

from .augment import AugmentedTask
from .base import Problems, Task, select
from .families import MNISTAutoencoderTask, MNISTCNNTask, MNISTMLPTask
from .mixture import TaskMixture
from .mnist import MNISTTask, make_activation
from .mnist_data import MNISTDigits, load_mnist, resolve_data_root
from .module import ModuleTask
from .quadratic import ConditionedQuadraticTask, QuadraticTask
from .sequence import SequenceTask
from .tabular import TabularTask

__all__ = [
    "AugmentedTask",
    "ConditionedQuadraticTask",
    "MNISTAutoencoderTask",
    "MNISTCNNTask",
    "MNISTDigits",
    "MNISTMLPTask",
    "MNISTTask",
    "ModuleTask",
    "Problems",
    "QuadraticTask",
    "SequenceTask",
    "TabularTask",
    "TaskMixture",
    "Task",
    "load_mnist",
    "make_activation",
    "resolve_data_root",
    "select",
]
