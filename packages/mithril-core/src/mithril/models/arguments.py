"""Checks of blocks' constructor arguments: a wrong value is a :class:`ModelBuildError` at construction.

A block argument that is silently coerced gives a result that looks right: ``Linear(dimension=0)``
compiles to an empty output, ``use_bias="False"`` is true, a negative padding crops. Each helper
returns the value in canonical form or raises naming the block (``where``, its class and name),
the argument and the value given.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ModelBuildError


def where(cls_name: str, name: str | None) -> str:
    """How errors name a block under construction: ``Conv2d`` or ``Conv2d 'stem'``."""
    return f"{cls_name} {name!r}" if name else cls_name


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def flag(value: Any, arg: str, at: str) -> bool:
    """A bool (``True``/``False``, NumPy's bools too); never a truthy string such as ``"False"``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ModelBuildError(f"{at}: {arg} must be True or False, got {value!r} ({type(value).__name__})")


def size(value: Any, arg: str, at: str, *, optional: bool = False, minimum: int = 1) -> int | None:
    """An int >= ``minimum`` (None allowed when ``optional``: inferred at compile)."""
    if value is None and optional:
        return None
    if not _is_int(value) or value < minimum:
        extra = " or None (inferred from the input)" if optional else ""
        raise ModelBuildError(f"{at}: {arg} must be an int >= {minimum}{extra}, got {value!r}")
    return int(value)


def sizes(value: Any, n: int | None, arg: str, at: str, *, minimum: int = 1) -> tuple[int, ...]:
    """An int or a sequence of ints (``n`` of them when given), each >= ``minimum``; an int is repeated."""
    if _is_int(value):
        items: tuple[Any, ...] = (value,) * (n or 1)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = tuple(value)
    else:
        items = ()
    count = f"{n} " if n else ""
    if not items or (n is not None and len(items) != n) or not all(_is_int(v) and v >= minimum for v in items):
        raise ModelBuildError(f"{at}: {arg} must be an int >= {minimum} or a sequence of {count}such ints, "
                              f"got {value!r}")
    return tuple(int(v) for v in items)


def number(value: Any, arg: str, at: str, *, low: float = -math.inf, high: float = math.inf) -> float:
    """A real number in ``[low, high]`` (not a bool, not NaN)."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value)
            or not low <= value <= high):
        bounds = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise ModelBuildError(f"{at}: {arg} must be a number {bounds}, got {value!r}")
    return float(value)


__all__ = ["where", "flag", "size", "sizes", "number"]
