"""Helpers shared by the tests that compare two ways of generating code, or measure NumPy memory."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

import mithril as ml


def traced_peak(fn: Callable[[], Any]) -> int:
    """Peak bytes tracemalloc sees during one call of ``fn`` (after one warm call), above what was
    allocated before it; NumPy's allocations are traced."""
    fn()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    out = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del out
    return int(peak)


def same_bits(a: Any, b: Any) -> bool:
    """Same shape, dtype and bytes (NaN payloads and signed zeros included)."""
    a, b = np.asarray(a), np.asarray(b)
    return bool(a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes())


def float64_backends() -> list[tuple[str, Callable[[], Any]]]:
    """(name, factory) of NumPy and, where installed, eager torch, in float64."""
    out: list[tuple[str, Callable[[], Any]]] = [("numpy", lambda: ml.NumpyBackend(dtype=ml.float64))]
    try:
        import mithril_torch  # noqa: F401
    except ImportError:
        return out
    out.append(("torch", lambda: ml.TorchBackend(dtype=ml.float64)))
    return out
