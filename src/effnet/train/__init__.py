"""Training with the paper's recipe: config, optimiser and schedule, EMA, checkpoints, the loop, evaluation."""

from effnet.train.config import PRESETS, TrainConfig, preset
from effnet.train.evaluate import EvalResult, evaluate
from effnet.train.trainer import Trainer, TrainingDiverged, TrainingInterrupted, TrainResult, train

__all__ = ["PRESETS", "EvalResult", "TrainConfig", "TrainResult", "Trainer", "TrainingDiverged", "TrainingInterrupted", "evaluate", "preset", "train"]
