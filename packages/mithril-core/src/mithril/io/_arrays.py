"""Arrays of any origin (torch tensors, backend arrays, NumPy) as NumPy copies, for ``mithril.io``."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ..errors import ParamsError


def _torch_tensor_type() -> Any:
    """torch.Tensor when torch is already imported (never imports it)."""
    torch = sys.modules.get("torch")
    return getattr(torch, "Tensor", None)


def numpy_copy(value: Any, backend: Any, what: str) -> np.ndarray:
    """A NumPy copy of ``value`` (a torch tensor, a backend array or anything ``np.asarray`` takes).

    Always a copy: a backend may wrap a host buffer without copying it (JAX does for
    aligned ones), and the source (a module's live buffers) may change afterwards.
    """
    tensor_type = _torch_tensor_type()
    if tensor_type is not None and isinstance(value, tensor_type):
        t = value.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":  # NumPy has no bfloat16; float32 holds it exactly
            t = t.float()
        arr = t.numpy()
    elif backend is not None and backend.is_array(value):
        arr = backend.to_numpy(value)
    else:
        try:
            arr = np.asarray(value)
        except Exception as e:
            raise ParamsError(f"{what}: cannot convert {type(value).__name__} to an array ({e})") from None
    return np.array(arr, copy=True, order="C")
