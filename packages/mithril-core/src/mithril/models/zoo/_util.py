"""Helpers shared by the zoo's blocks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ...errors import ModelBuildError
from ..connections import Initializer, IOKey, TerminalRef
from ..model import Model


def _xavier_uniform(backend: Any, shape: tuple[int, ...], ref: tuple[int, ...] | None) -> Any:
    fan_out, fan_in = shape[0], shape[1] if len(shape) > 1 else 1
    receptive = math.prod(shape[2:])
    bound = math.sqrt(6.0 / ((fan_in + fan_out) * receptive))
    return backend.uniform(-bound, bound, shape)


#: torch.nn.init.xavier_uniform_ (MultiheadAttention's in_proj_weight)
xavier_uniform = Initializer(_xavier_uniform, label="xavier_uniform")


def single(v: int | Sequence[int], what: str) -> int:
    if isinstance(v, int):
        return v
    t = tuple(v)
    if len(t) != 1:
        raise ModelBuildError(f"{what}: expected an int or a 1-tuple, got {v!r}")
    return int(t[0])


def shape_tuple(v: int | Sequence[int]) -> tuple[int, ...]:
    return (int(v),) if isinstance(v, int) else tuple(int(x) for x in v)


REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str, where: str) -> None:
    if reduction not in REDUCTIONS:
        raise ModelBuildError(f"{where}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def reduce(model: Model, x: TerminalRef, reduction: str) -> None:
    """Add the loss reduction, writing to the model's ``output``."""
    if reduction == "none":
        model.call("identity", x, output=IOKey("output"))
    else:
        model.call(reduction, x, axis=None, keepdims=False, output=IOKey("output"))
