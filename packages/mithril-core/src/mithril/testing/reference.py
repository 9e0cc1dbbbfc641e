"""The NumPy float64 reference of every core primitive, under its testing name.

The functions live in :mod:`mithril.primitives.reference` (constant folding evaluates them on a backend
without Python kernels); backend test suites and ``check_primitive`` read them from here.
"""

from __future__ import annotations

from typing import Any

from ..primitives import reference as _reference
from ..primitives.reference import REFERENCE, ReferenceFn, reference


def __getattr__(name: str) -> Any:
    """Every other function of :mod:`mithril.primitives.reference` (``conv2d``, ``slice_``...)."""
    return getattr(_reference, name)


__all__ = ["REFERENCE", "ReferenceFn", "reference"]
