"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"; ``optax.lion``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..expr import X
from .base import Optimizer, Slot


class Lion(Optimizer):
    """``p = p (1 - lr wd) - lr sign(b1 m + (1 - b1) g)``; ``m = b2 m + (1 - b2) g``."""

    name: ClassVar[str] = "lion"
    slots: ClassVar[tuple[Slot, ...]] = (Slot("m"),)
    defaults: ClassVar[Mapping[str, Any]] = {"betas": (0.9, 0.99), "weight_decay": 0.0}

    def __init__(self, lr: Any = 1e-4, **kwargs: Any) -> None:
        super().__init__(lr, **kwargs)

    def update(self, p: X, g: X, slots: dict[str, X], lr: X, t: X, h: Mapping[str, Any]) -> tuple[X, dict[str, X]]:
        b1, b2 = (float(b) for b in h["betas"])
        m = slots["m"]
        direction = (b1 * m + (1.0 - b1) * g).sign()
        if h["weight_decay"]:
            p = p * (1.0 - lr * h["weight_decay"])
        return p - lr * direction, {"m": b2 * m + (1.0 - b2) * g}
