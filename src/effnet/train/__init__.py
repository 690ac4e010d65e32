"""Training with the paper's recipe: config, a run prepared once from it, optimiser and schedule, EMA, checkpoints, the
loop, evaluation."""

from effnet.train.config import PRESETS, TrainConfig, preset
from effnet.train.evaluate import EvalResult, evaluate
from effnet.train.prepared import PreparedRun, prepare_run
from effnet.train.trainer import Trainer, TrainingDiverged, TrainingInterrupted, TrainResult, train

__all__ = [
    "PRESETS",
    "EvalResult",
    "PreparedRun",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "evaluate",
    "prepare_run",
    "preset",
    "train",
]
