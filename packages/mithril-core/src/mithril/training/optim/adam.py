"""Adam and AdamW (``torch.optim.Adam`` / ``AdamW``, ``optax.adam`` / ``adamw``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ..expr import X
from .base import Optimizer, Slot
from .fused import adam_update


class Adam(Optimizer):
    """``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g²``,
    ``p -= lr m̂ / (sqrt(v̂) + eps)`` with bias-corrected moments; ``weight_decay`` adds
    ``wd p`` to the gradient (L2), as torch's Adam. ``amsgrad`` keeps the maximum of ``v̂``."""

    name: ClassVar[str] = "adam"
    slots: ClassVar[tuple[Slot, ...]] = (Slot("m"), Slot("v"))
    defaults: ClassVar[Mapping[str, Any]] = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False}
    #: decoupled weight decay (AdamW)
    decoupled: ClassVar[bool] = False

    def slots_for(self, h: Mapping[str, Any]) -> tuple[Slot, ...]:
        return (*self.slots, Slot("v_max")) if h["amsgrad"] else self.slots

    def update(self, p: X, g: X, slots: dict[str, X], lr: X, t: X, h: Mapping[str, Any]) -> tuple[X, dict[str, X]]:
        b1, b2 = (float(b) for b in h["betas"])
        opts = dict(beta1=b1, beta2=b2, eps=float(h["eps"]), weight_decay=float(h["weight_decay"]))
        if not h["amsgrad"]:  # one fused node per parameter (its expansion is the same arithmetic as below)
            new = adam_update(p, g, slots["m"], slots["v"], lr, t, decoupled=self.decoupled, **opts)
            return new["param"], {"m": new["m"], "v": new["v"]}
        wd = opts["weight_decay"]
        if wd and self.decoupled:
            p = p * (1.0 - lr * wd)
        elif wd:
            g = g + wd * p
        m = b1 * slots["m"] + (1.0 - b1) * g
        v = b2 * slots["v"] + (1.0 - b2) * g.square()
        v_max = slots["v_max"].maximum(v)
        bias1 = 1.0 - b1**t
        bias2 = 1.0 - b2**t
        denom = (v_max / bias2).sqrt() + h["eps"]
        return p - (lr / bias1) * m / denom, {"m": m, "v": v, "v_max": v_max}


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr wd`` before the Adam step (default wd 0.01)."""

    name: ClassVar[str] = "adamw"
    defaults: ClassVar[Mapping[str, Any]] = {**Adam.defaults, "weight_decay": 1e-2}
    decoupled: ClassVar[bool] = True
