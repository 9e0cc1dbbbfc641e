"""RMSprop, plain or centered, with momentum (``torch.optim.RMSprop``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..expr import X
from .base import Optimizer, Slot


class RMSprop(Optimizer):
    """``s = alpha s + (1 - alpha) g²``; ``avg = sqrt(s - ḡ²) + eps`` (centered, ``ḡ`` the running
    mean of ``g``) or ``sqrt(s) + eps``; ``p -= lr g / avg``, through a momentum buffer if set."""

    name: ClassVar[str] = "rmsprop"
    slots: ClassVar[tuple[Slot, ...]] = (Slot("square_avg"), Slot("grad_avg"), Slot("momentum_buffer"))
    defaults: ClassVar[Mapping[str, Any]] = {
        "alpha": 0.99,
        "eps": 1e-8,
        "weight_decay": 0.0,
        "momentum": 0.0,
        "centered": False,
    }

    def __init__(self, lr: Any = 1e-2, **kwargs: Any) -> None:
        super().__init__(lr, **kwargs)

    def slots_for(self, h: Mapping[str, Any]) -> tuple[Slot, ...]:
        keep = {"square_avg": True, "grad_avg": bool(h["centered"]), "momentum_buffer": bool(h["momentum"])}
        return tuple(s for s in self.slots if keep[s.name])

    def update(self, p: X, g: X, slots: dict[str, X], lr: X, t: X, h: Mapping[str, Any]) -> tuple[X, dict[str, X]]:
        if h["weight_decay"]:
            g = g + h["weight_decay"] * p
        alpha = float(h["alpha"])
        sq = alpha * slots["square_avg"] + (1.0 - alpha) * g.square()
        new = {"square_avg": sq}
        if h["centered"]:
            ga = new["grad_avg"] = alpha * slots["grad_avg"] + (1.0 - alpha) * g
            avg = (sq - ga.square()).sqrt() + h["eps"]
        else:
            avg = sq.sqrt() + h["eps"]
        if h["momentum"]:
            buf = new["momentum_buffer"] = h["momentum"] * slots["momentum_buffer"] + g / avg
            return p - lr * buf, new
        return p - lr * g / avg, new
