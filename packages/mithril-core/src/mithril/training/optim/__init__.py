"""Optimizers whose update rules are written in core primitives, so every backend trains."""

from .adagrad import Adagrad
from .adam import Adam, AdamW
from .base import Optimizer, ParamGroup, Slot
from .lion import Lion
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Lion", "Optimizer", "ParamGroup", "RMSprop", "Slot"]
