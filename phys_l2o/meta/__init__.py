"""Meta-training (a training state moved by a gradient estimator: truncated BPTT), evaluation
on shared test problems, statistics, checkpoints."""

from .callbacks import Callback, Checkpointing, DivergenceCheck, Monitors, Progress
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .es import PES, EvolutionStrategies, Population
from .estimators import GradientEstimator, MetaStep, TruncatedBPTT
from .evaluate import compare, evaluate
from .rollout import rollout
from .state import MetaTrainingDiverged, MetaTrainingInterrupted, Schedule, TrainResult, TrainState
from .stats import bootstrap_ci, paired_difference, seed_comparison, summarize
from .train import MetaTrainer, meta_train

__all__ = [
    "Callback",
    "CheckpointError",
    "Checkpointing",
    "DivergenceCheck",
    "EvolutionStrategies",
    "GradientEstimator",
    "MetaStep",
    "MetaTrainer",
    "MetaTrainingDiverged",
    "MetaTrainingInterrupted",
    "Monitors",
    "PES",
    "Population",
    "Progress",
    "Schedule",
    "TrainResult",
    "TrainState",
    "TruncatedBPTT",
    "bootstrap_ci",
    "compare",
    "evaluate",
    "load_checkpoint",
    "meta_train",
    "paired_difference",
    "rollout",
    "save_checkpoint",
    "seed_comparison",
    "summarize",
]
