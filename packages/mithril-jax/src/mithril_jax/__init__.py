"""Mithril's JAX backend: ``JaxBackend``, registered as the ``jax`` plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mithril.plugins.lazy import lazy_attributes

if TYPE_CHECKING:
    from .backend import JaxBackend

__version__ = "0.1.0"
__all__ = ["JaxBackend", "__version__"]

_LAZY = {"JaxBackend": ".backend"}


#: imported on first use, not when the plugin entry point loads (that would import jax)
__getattr__ = lazy_attributes(__name__, _LAZY)
