"""Dropout: random zeroing in training mode, the identity in inference."""

from __future__ import annotations

import math

from ...errors import ModelBuildError
from ..connections import IOKey
from ..model import Model


def check_probability(p: object, where: str) -> float:
    """``p`` as a float in [0, 1], or a :class:`ModelBuildError` naming ``where``."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or math.isnan(p) or not 0.0 <= p <= 1.0:
        raise ModelBuildError(f"{where}: dropout probability must be a number in [0, 1], got {p!r}")
    return float(p)


class Dropout(Model, template=True):
    """torch.nn.Dropout: in training mode each element is zeroed with probability ``p``
    and the others are scaled by ``1 / (1 - p)``; in inference mode the identity.

    The mode is resolved at compile time (``mode_switch``): an inference graph has no
    node left for it. The mask comes from the ``bernoulli`` primitive, a fresh draw per
    ``evaluate`` from the backend's generator (``backend.seed(n)`` makes it
    reproducible); gradients of the same call use the same mask. ``p=0`` is the
    identity in both modes, ``p=1`` gives zeros in training (as torch).
    """

    def __init__(self, p: float = 0.5, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.p = p = check_probability(p, "Dropout")
        x = IOKey("input")
        if p == 0.0:
            self.call("identity", x, output=IOKey("output"))
        else:
            if p == 1.0:
                train = self.call("mul", x, 0.0)
            else:
                keep = self.call("bernoulli", x, p=1.0 - p)
                train = self.call("mul", x, self.call("where", keep, 1.0 / (1.0 - p), 0.0))
            self.call("mode_switch", train, "input", output=IOKey("output"))
        self.set_canonical(input="input", output="output")


__all__ = ["Dropout", "check_probability"]
