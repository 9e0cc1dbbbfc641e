"""Checks of ``evaluate``'s arguments that look at values, not just shapes and dtypes.

Int inputs read as indices (an :class:`~mithril.models.Embedding`'s ids, a class-index loss's
target) are checked to lie in range before anything runs, on every backend and with or without
``jit``: an index out of range has no one meaning across backends (NumPy and PyTorch raise deep
inside, JAX reads NaN or clamps, a negative index wraps around), so it is an
:class:`~mithril.errors.EvaluationError` naming the input, the block reading it and the value.
It costs one min/max over each index input per call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import EvaluationError
from ..ir.graph import IndexCheck


def out_of_range(arr: np.ndarray, size: int, ignore: int | None) -> tuple[list[int], int] | None:
    """The position and value of the first index outside ``[0, size)`` (and not ``ignore``), or None."""
    if arr.size == 0:
        return None
    lo, hi = int(arr.min()), int(arr.max())
    if lo >= 0 and hi < size:
        return None
    bad = (arr < 0) | (arr >= size)
    if ignore is not None:
        bad &= arr != ignore
    if not bad.any():
        return None
    where = np.argwhere(bad)[0]
    return [int(i) for i in where], int(arr[tuple(where)])


def check_indices(backend: Any, checks: Sequence[IndexCheck], inputs: Mapping[str, Any]) -> None:
    """Raise :class:`EvaluationError` for the first index input holding a value out of range."""
    for c in checks:
        x = inputs.get(c.name)
        if x is None:
            continue
        bad = out_of_range(np.asarray(backend.to_numpy(x)), c.size, c.ignore)
        if bad is not None:
            pos, value = bad
            extra = f" (or {c.ignore}, the ignore_index)" if c.ignore is not None else ""
            raise EvaluationError(
                f"input {c.name!r} holds {value} at {pos}, read as {c.terminal} of {c.block}: indices must be in "
                f"[0, {c.size - 1}]{extra}"
            )


__all__ = ["check_indices", "out_of_range"]
