"""Mithril's NumPy backend (the reference backend)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import NumpyBackend

__all__ = ["NumpyBackend"]
__version__ = "0.1.0"

_LAZY = {'NumpyBackend': '.backend'}


def __getattr__(name: str) -> Any:
    """Import the backend (and numpy) on first use, not when the plugin entry point loads."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
