"""Adagrad with learning-rate decay (``torch.optim.Adagrad``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..expr import X
from .base import Optimizer, Slot


class Adagrad(Optimizer):
    """``s += g²``; ``p -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps)``."""

    name: ClassVar[str] = "adagrad"
    slots: ClassVar[tuple[Slot, ...]] = (Slot("sum", init="initial_accumulator_value"),)
    defaults: ClassVar[Mapping[str, Any]] = {
        "lr_decay": 0.0,
        "weight_decay": 0.0,
        "initial_accumulator_value": 0.0,
        "eps": 1e-10,
    }

    def __init__(self, lr: Any = 1e-2, **kwargs: Any) -> None:
        super().__init__(lr, **kwargs)

    def update(self, p: X, g: X, slots: dict[str, X], lr: X, t: X, h: Mapping[str, Any]) -> tuple[X, dict[str, X]]:
        if h["weight_decay"]:
            g = g + h["weight_decay"] * p
        clr = lr / (1.0 + (t - 1.0) * h["lr_decay"]) if h["lr_decay"] else lr
        s = slots["sum"] + g.square()
        return p - clr * g / (s.sqrt() + h["eps"]), {"sum": s}
