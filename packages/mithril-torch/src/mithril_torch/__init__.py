"""Mithril's PyTorch backend (distribution ``mithril-torch``).

>>> import mithril as ml                                  # doctest: +SKIP
>>> backend = ml.TorchBackend(dtype=ml.float32, device="cuda")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mithril.plugins.lazy import lazy_attributes

if TYPE_CHECKING:
    from .backend import TorchBackend
    from .kernels import make_kernels

__version__ = "0.1.0"

__all__ = ["TorchBackend", "__version__", "make_kernels"]

_LAZY = {"TorchBackend": ".backend", "make_kernels": ".kernels"}


#: imported on first use, not when the plugin entry point loads (that would import torch)
__getattr__ = lazy_attributes(__name__, _LAZY)
