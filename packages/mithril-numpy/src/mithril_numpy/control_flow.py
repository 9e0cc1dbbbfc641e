"""Kernels of the control-flow primitives (mithril.ir.control_flow): a Python loop and a Python branch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def scan(
    *inputs: np.ndarray,
    body: Callable[..., Sequence[np.ndarray]],
    n_carry: int,
    n_xs: int,
    length: int,
    reverse: bool,
) -> tuple[np.ndarray, ...]:
    """``body`` once per step of axis 0 of the ``xs``; returns ``(*final carries, *stacked ys)``."""
    carry: Sequence[np.ndarray] = inputs[:n_carry]
    xs, consts = inputs[n_carry : n_carry + n_xs], inputs[n_carry + n_xs :]
    ys: list[Sequence[np.ndarray]] = []
    for t in range(length - 1, -1, -1) if reverse else range(length):
        out = body(*carry, *(x[t] for x in xs), *consts)
        carry, y = out[:n_carry], out[n_carry:]
        ys.append(y)
    if reverse:
        ys.reverse()
    return (*carry, *(np.stack(column) for column in zip(*ys)))


def cond(selector: Any, *operands: np.ndarray, branches: Sequence[Callable[..., Any]]) -> tuple[Any, ...]:
    """The branch ``selector`` picks (clamped to the branches, as jax.lax.switch)."""
    index = min(max(int(selector), 0), len(branches) - 1)
    return tuple(branches[index](*operands))


KERNELS: dict[str, Callable[..., Any]] = {"scan": scan, "cond": cond}
