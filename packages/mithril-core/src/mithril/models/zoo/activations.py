"""Activations missing from the primitive blocks, as composite blocks."""

from __future__ import annotations

from ..connections import IOKey
from ..model import Model


class Silu(Model, template=True):
    """``x * sigmoid(x)`` (torch.nn.SiLU)."""

    def __init__(self, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.call("mul", IOKey("input"), self.call("sigmoid", "input"), output=IOKey("output"))
        self.set_canonical(input="input", output="output")


__all__ = ["Silu"]
