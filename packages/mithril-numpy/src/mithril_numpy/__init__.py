"""Mithril's NumPy backend (the reference backend)."""

from __future__ import annotations

from .backend import NumpyBackend

__all__ = ["NumpyBackend"]
__version__ = "0.1.0"
