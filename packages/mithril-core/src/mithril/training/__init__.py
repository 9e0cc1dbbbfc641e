"""Training: losses (in :mod:`mithril.models`), optimizers, schedules, one compiled training step, ``fit``."""

from . import optim, schedules
from .callbacks import Callback, EarlyStopping, LearningRateLogger, ModelCheckpoint
from .checkpoint import load_checkpoint, save_checkpoint
from .fit import History, Trainer
from .metrics import Accuracy, MeanAbsoluteError, MeanSquaredError, Metric, TopKAccuracy
from .state import StepResult, TrainState
from .step import TrainingStep, compile_step

__all__ = ["optim", "schedules", "Callback", "EarlyStopping", "LearningRateLogger", "ModelCheckpoint",
           "load_checkpoint", "save_checkpoint", "History", "Trainer", "Metric", "Accuracy", "TopKAccuracy", "MeanAbsoluteError", "MeanSquaredError",
           "StepResult", "TrainState", "TrainingStep", "compile_step"]
