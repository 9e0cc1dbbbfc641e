"""Training: losses (in :mod:`mithril.models`), optimizers, schedules, one compiled training step, ``fit``."""

from . import optim, schedules
from .metrics import Accuracy, MeanAbsoluteError, MeanSquaredError, Metric, TopKAccuracy
from .state import StepResult, TrainState
from .step import TrainingStep, compile_step

__all__ = ["optim", "schedules", "Metric", "Accuracy", "TopKAccuracy", "MeanAbsoluteError", "MeanSquaredError",
           "StepResult", "TrainState", "TrainingStep", "compile_step"]
