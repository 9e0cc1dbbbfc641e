"""Params dicts to and from ``.safetensors`` files (the format of Hugging Face checkpoints).

``save_params(params, path)`` writes every entry (parameters and state) under its
hierarchical name; ``load_params(path, backend)`` reads them back as the backend's
arrays, floats in the backend's dtype unless ``keep_dtypes=True``. The zoo's names
follow torch.nn, so a file written by ``safetensors.torch.save_file(module.state_dict())``
loads into the params of the matching block (``rename`` maps the names that differ).

Needs the ``safetensors`` package (``pip install safetensors``); the core does not depend on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import MithrilError, UnsupportedError


def _library() -> Any:
    try:
        import safetensors.numpy as st
    except ImportError:  # pragma: no cover - depends on the environment
        raise UnsupportedError("mithril.io.safetensors needs the 'safetensors' package: pip install safetensors") from None
    return st


def _to_numpy(value: Any, backend: Any) -> np.ndarray:
    arr = backend.to_numpy(value) if backend is not None else np.asarray(value)
    return np.ascontiguousarray(arr)


def save_params(params: Mapping[str, Any], path: str | os.PathLike[str], backend: Any = None, *,
                metadata: Mapping[str, str] | None = None) -> None:
    """Write ``params`` (name -> array of any backend, or NumPy) to a safetensors file.

    ``backend`` converts its arrays to NumPy; without it ``np.asarray`` is used
    (which works for NumPy, JAX and CPU torch arrays).
    """
    st = _library()
    arrays = {}
    for name, value in params.items():
        if not isinstance(name, str) or not name:
            raise MithrilError(f"save_params: parameter names must be non-empty strings, got {name!r}")
        arrays[name] = _to_numpy(value, backend)
    st.save_file(arrays, os.fspath(path), metadata=dict(metadata) if metadata else None)


def load_params(path: str | os.PathLike[str], backend: Any = None, *, keep_dtypes: bool = False,
                rename: Mapping[str, str] | Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """Read a safetensors file into a params dict.

    With ``backend``, arrays become the backend's (float data in its dtype unless
    ``keep_dtypes``); without it they stay NumPy. ``rename`` maps file names to
    param names: a dict (names not in it are kept) or a function (None drops the entry).
    """
    st = _library()
    raw = st.load_file(os.fspath(path))
    out: dict[str, Any] = {}
    for name, arr in raw.items():
        if rename is None:
            key: str | None = name
        elif callable(rename):
            key = rename(name)
        else:
            key = rename.get(name, name)
        if key is None:
            continue
        if key in out:
            raise MithrilError(f"load_params: two entries of {os.fspath(path)!r} map to the name {key!r}")
        if backend is None:
            out[key] = arr
        elif keep_dtypes or arr.dtype.kind != "f":
            out[key] = backend.array(arr, _dtype_of(arr))
        else:
            out[key] = backend.array(arr)
    return out


def _dtype_of(arr: np.ndarray) -> Any:
    from ..dtypes import DType

    try:
        return DType(arr.dtype.name)
    except ValueError:
        raise UnsupportedError(f"load_params: no mithril dtype for {arr.dtype}") from None


__all__ = ["save_params", "load_params"]
