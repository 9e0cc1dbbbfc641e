"""Mithril's JAX backend: ``JaxBackend``, registered as the ``jax`` plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import JaxBackend

__version__ = "0.1.0"
__all__ = ["JaxBackend", "__version__"]

_LAZY = {'JaxBackend': '.backend'}


def __getattr__(name: str) -> Any:
    """Import the backend (and jax) on first use, not when the plugin entry point loads."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
