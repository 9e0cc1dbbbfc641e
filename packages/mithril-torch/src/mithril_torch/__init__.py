"""Mithril's PyTorch backend (distribution ``mithril-torch``).

>>> import mithril as ml                                  # doctest: +SKIP
>>> backend = ml.TorchBackend(dtype=ml.float32, device="cuda")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import TorchBackend
    from .kernels import make_kernels

__version__ = "0.1.0"

__all__ = ["TorchBackend", "make_kernels", "__version__"]

_LAZY = {'TorchBackend': '.backend', 'make_kernels': '.kernels'}


def __getattr__(name: str) -> Any:
    """Import the backend (and torch) on first use, not when the plugin entry point loads."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
