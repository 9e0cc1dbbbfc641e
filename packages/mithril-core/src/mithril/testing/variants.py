"""Backends under test, by variant name, for parity tests against torch.nn and other oracles.

A variant is an installed backend among NumPy, PyTorch and JAX, plus ``"torch-autograd"``:
``TorchBackend(autodiff="torch")``, whose gradients come from torch.autograd instead of the
core's autodiff pass. Backends are made once per (variant, dtype) and shared.
"""

from __future__ import annotations

import functools
from typing import Any

import mithril as ml

#: backend name -> class name on ``mithril``
BACKEND_CLASSES = {"numpy": "NumpyBackend", "torch": "TorchBackend", "jax": "JaxBackend"}


def installed() -> list[str]:
    """The installed backends among :data:`BACKEND_CLASSES`."""
    return sorted(set(ml.plugins.backends()) & set(BACKEND_CLASSES))


def variants() -> list[str]:
    """:func:`installed`, and ``"torch-autograd"`` when PyTorch is installed."""
    names = installed()
    return names + (["torch-autograd"] if "torch" in names else [])


@functools.cache
def variant_backend(name: str, dtype: str) -> Any:
    """The shared backend of variant ``name`` computing in ``dtype`` (``"float32"``, ``"float64"``)."""
    if name == "torch-autograd":
        return ml.TorchBackend(dtype=getattr(ml, dtype), autodiff="torch")
    return getattr(ml, BACKEND_CLASSES[name])(dtype=getattr(ml, dtype))


__all__ = ["BACKEND_CLASSES", "installed", "variant_backend", "variants"]
