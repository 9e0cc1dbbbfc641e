"""Training: losses (in :mod:`mithril.models`), optimizers, schedules, one compiled training step, ``fit``."""

from . import optim, schedules
from .callbacks import Callback, EarlyStopping, LearningRateLogger, ModelCheckpoint
from .checkpoint import load_checkpoint, save_checkpoint
from .fit import History, Trainer
from .metrics import Accuracy, MeanAbsoluteError, MeanSquaredError, Metric, TopKAccuracy
from .state import StepResult, TrainState
from .step import TrainingStep, compile_step

__all__ = [
    "Accuracy",
    "Callback",
    "EarlyStopping",
    "History",
    "LearningRateLogger",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "Metric",
    "ModelCheckpoint",
    "StepResult",
    "TopKAccuracy",
    "TrainState",
    "Trainer",
    "TrainingStep",
    "compile_step",
    "load_checkpoint",
    "optim",
    "save_checkpoint",
    "schedules",
]
