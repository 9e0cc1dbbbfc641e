"""Mithril's JAX backend: ``JaxBackend``, registered as the ``jax`` plugin."""

from __future__ import annotations

from .backend import JaxBackend

__version__ = "0.1.0"
__all__ = ["JaxBackend", "__version__"]
