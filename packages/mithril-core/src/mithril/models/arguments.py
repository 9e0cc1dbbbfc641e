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
from typing import Any, Literal, overload

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


@overload
def size(value: Any, arg: str, at: str, *, optional: Literal[False] = False, minimum: int = 1) -> int: ...
@overload
def size(value: Any, arg: str, at: str, *, optional: bool, minimum: int = 1) -> int | None: ...
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
        raise ModelBuildError(
            f"{at}: {arg} must be an int >= {minimum} or a sequence of {count}such ints, got {value!r}"
        )
    return tuple(int(v) for v in items)


def number(value: Any, arg: str, at: str, *, low: float = -math.inf, high: float = math.inf) -> float:
    """A real number in ``[low, high]`` (not a bool, not NaN)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or math.isnan(value)
        or not low <= float(value) <= high
    ):
        bounds = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise ModelBuildError(f"{at}: {arg} must be a number {bounds}, got {value!r}")
    return float(value)


def integer(value: Any, arg: str, at: str) -> int:
    """An int of any sign (an axis: range-checked against the rank at compile), not a bool."""
    if not _is_int(value):
        raise ModelBuildError(f"{at}: {arg} must be an int, got {value!r} ({type(value).__name__})")
    return int(value)


def axes(value: Any, arg: str, at: str, *, optional: bool = True) -> tuple[int, ...] | None:
    """An int or a sequence of distinct ints (axes), or None (all axes) when ``optional``."""
    if value is None and optional:
        return None
    items = (
        (value,)
        if _is_int(value)
        else tuple(value)
        if (isinstance(value, Sequence) and not isinstance(value, str))
        else None
    )
    if not items or not all(_is_int(v) for v in items) or len({int(v) for v in items}) != len(items):
        none = " or None (all axes)" if optional else ""
        raise ModelBuildError(f"{at}: {arg} must be an int or a sequence of distinct ints{none}, got {value!r}")
    return tuple(int(v) for v in items)


def ints(value: Any, arg: str, at: str, *, minimum: int | None = None) -> tuple[int, ...]:
    """A sequence of ints (a shape, a permutation), each >= ``minimum`` when given; not a str."""
    ok = (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and all(_is_int(v) and (minimum is None or v >= minimum) for v in value)
    )
    if not ok:
        bound = f" >= {minimum}" if minimum is not None else ""
        raise ModelBuildError(f"{at}: {arg} must be a sequence of ints{bound}, got {value!r}")
    return tuple(int(v) for v in value)


def choice(value: Any, options: Sequence[Any], arg: str, at: str) -> Any:
    """One of ``options``."""
    if not isinstance(value, (str, int, float, type(None))) or value not in options:
        raise ModelBuildError(f"{at}: {arg} must be one of {list(options)}, got {value!r}")
    return value


__all__ = ["axes", "choice", "flag", "integer", "ints", "number", "size", "sizes", "where"]
