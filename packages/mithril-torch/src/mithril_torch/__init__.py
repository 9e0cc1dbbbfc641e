"""Mithril's PyTorch backend (distribution ``mithril-torch``).

>>> import mithril as ml                                  # doctest: +SKIP
>>> backend = ml.TorchBackend(dtype=ml.float32, device="cuda")  # doctest: +SKIP
"""

from __future__ import annotations

from .backend import TorchBackend
from .kernels import make_kernels

__version__ = "0.1.0"

__all__ = ["TorchBackend", "make_kernels", "__version__"]
