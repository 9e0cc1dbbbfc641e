"""SGD with momentum, dampening, Nesterov momentum and weight decay (``torch.optim.SGD``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ...errors import ModelBuildError
from ..expr import X, where
from .base import Optimizer, Slot


class SGD(Optimizer):
    """``g += wd p``; with momentum ``buf = momentum buf + (1 - dampening) g`` (``buf = g`` at the
    first step), ``g = g + momentum buf`` (Nesterov) or ``buf``; ``p -= lr g``."""

    name: ClassVar[str] = "sgd"
    slots: ClassVar[tuple[Slot, ...]] = (Slot("momentum_buffer"),)
    defaults: ClassVar[Mapping[str, Any]] = {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0}

    def validate(self, options: Mapping[str, Any], where_: str) -> None:
        super().validate(options, where_)
        if options["nesterov"] and (options["momentum"] <= 0 or options["dampening"] != 0):
            raise ModelBuildError(f"{where_}: Nesterov momentum needs momentum > 0 and dampening 0")

    def slots_for(self, h: Mapping[str, Any]) -> tuple[Slot, ...]:
        return self.slots if h["momentum"] else ()

    def update(self, p: X, g: X, slots: dict[str, X], lr: X, t: X, h: Mapping[str, Any]) -> tuple[X, dict[str, X]]:
        if h["weight_decay"]:
            g = g + h["weight_decay"] * p
        if not h["momentum"]:
            return p - lr * g, {}
        buf = where(t.less(1.5), g, h["momentum"] * slots["momentum_buffer"] + (1.0 - h["dampening"]) * g)
        g = g + h["momentum"] * buf if h["nesterov"] else buf
        return p - lr * g, {"momentum_buffer": buf}
