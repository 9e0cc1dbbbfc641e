"""Mithril's NumPy backend (the reference backend)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mithril.plugins.lazy import lazy_attributes

if TYPE_CHECKING:
    from .backend import NumpyBackend

__all__ = ["NumpyBackend"]
__version__ = "0.1.0"

_LAZY = {"NumpyBackend": ".backend"}


#: imported on first use, not when the plugin entry point loads (that would import numpy)
__getattr__ = lazy_attributes(__name__, _LAZY)
