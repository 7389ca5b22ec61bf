"""Meta-training (truncated BPTT), evaluation on shared test problems, statistics, checkpoints."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .evaluate import compare, evaluate
from .rollout import rollout
from .stats import bootstrap_ci, paired_difference, summarize
from .train import (
    MetaTrainingDiverged,
    MetaTrainingInterrupted,
    Schedule,
    TrainResult,
    meta_train,
)

__all__ = [
    "CheckpointError",
    "MetaTrainingDiverged",
    "MetaTrainingInterrupted",
    "Schedule",
    "TrainResult",
    "bootstrap_ci",
    "compare",
    "evaluate",
    "load_checkpoint",
    "meta_train",
    "paired_difference",
    "rollout",
    "save_checkpoint",
    "summarize",
]
