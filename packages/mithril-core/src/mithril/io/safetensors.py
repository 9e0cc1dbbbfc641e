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

from ..dtypes import DType
from ..errors import CheckpointError, MithrilError, UnsupportedError
from ..headers import HeaderError, read_safetensors_header


def _library() -> Any:
    try:
        import safetensors.numpy as st
    except ImportError:  # pragma: no cover - depends on the environment
        raise UnsupportedError(
            "mithril.io.safetensors needs the 'safetensors' package: pip install safetensors"
        ) from None
    return st


def _to_numpy(value: Any, backend: Any) -> np.ndarray:
    arr = backend.to_numpy(value) if backend is not None else np.asarray(value)
    return np.ascontiguousarray(arr)


def save_params(
    params: Mapping[str, Any],
    path: str | os.PathLike[str],
    backend: Any = None,
    *,
    metadata: Mapping[str, str] | None = None,
) -> None:
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


def load_params(
    path: str | os.PathLike[str],
    backend: Any = None,
    *,
    keep_dtypes: bool = False,
    rename: Mapping[str, str] | Callable[[str], str | None] | None = None,
) -> dict[str, Any]:
    """Read a safetensors file into a params dict.

    With ``backend``, arrays become the backend's (float data in its dtype unless
    ``keep_dtypes``); without it they stay NumPy. ``rename`` maps file names to
    param names: a dict (names not in it are kept) or a function (None drops the entry).

    The file is read by a checked reader (:mod:`mithril.headers`: every length and offset
    against the file's size), never unpickled; a missing, truncated or corrupted file is a
    :class:`~mithril.errors.CheckpointError`. NumPy has no bfloat16: ``BF16`` tensors are read
    as float32, which holds them exactly (then cast to the backend's dtype, or kept as bfloat16
    with ``keep_dtypes`` on a backend that has it).
    """
    raw = _read_file(path)
    out: dict[str, Any] = {}
    for name, (arr, file_dtype) in raw.items():
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
            out[key] = backend.array(arr, _dtype_of(arr) if file_dtype != "BF16" else _bfloat16(backend, name))
        else:
            out[key] = backend.array(arr)
    return out


#: safetensors dtype -> NumPy dtype (little-endian); BF16 is read as uint16 and widened to float32
_NUMPY_DTYPES = {
    "BOOL": "|b1",
    "U8": "|u1",
    "I8": "|i1",
    "I16": "<i2",
    "U16": "<u2",
    "F16": "<f2",
    "I32": "<i4",
    "U32": "<u4",
    "F32": "<f4",
    "F64": "<f8",
    "I64": "<i8",
    "U64": "<u8",
    "BF16": "<u2",
}


def _read_file(path: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, str]]:
    """name -> (array, file dtype), in file order, from a header checked against the file."""
    where = f"load_params: {os.fspath(path)!r}"
    if not os.path.exists(path):
        raise CheckpointError(f"{where}: no such file")
    if not os.path.isfile(path):
        raise CheckpointError(f"{where} is not a file")
    try:
        header = read_safetensors_header(path)
        out: dict[str, tuple[np.ndarray, str]] = {}
        with open(path, "rb") as f:
            for t in header.tensors:
                dtype = _NUMPY_DTYPES.get(t.dtype)
                if dtype is None:
                    raise UnsupportedError(
                        f"{where}: tensor {t.name!r} has dtype {t.dtype}, which Mithril does not read"
                    )
                f.seek(t.offset)
                data = f.read(t.nbytes)
                if len(data) != t.nbytes:
                    raise CheckpointError(
                        f"{where}: truncated: tensor {t.name!r} has {len(data)} of its {t.nbytes} bytes"
                    )
                arr = np.frombuffer(data, dtype=np.dtype(dtype)).reshape(t.shape)
                if t.dtype == "BF16":
                    arr = (arr.astype(np.uint32) << 16).view(np.float32)
                out[t.name] = (arr.astype(arr.dtype.newbyteorder("=")), t.dtype)
    except HeaderError as e:
        raise CheckpointError(f"{where} is not a valid safetensors file: {e}") from None
    except OSError as e:
        raise CheckpointError(f"{where} cannot be read: {e}") from None
    return out


def _bfloat16(backend: Any, name: str) -> Any:
    if DType.bfloat16 not in getattr(backend, "supported_dtypes", ()):
        raise UnsupportedError(
            f"load_params(keep_dtypes=True): tensor {name!r} is bfloat16, which {type(backend).__name__} does "
            f"not have; load without keep_dtypes (bfloat16 widens exactly to float32)"
        )
    return DType.bfloat16


def _dtype_of(arr: np.ndarray) -> Any:
    try:
        return DType(arr.dtype.name)
    except ValueError:
        raise UnsupportedError(f"load_params: no mithril dtype for {arr.dtype}") from None


__all__ = ["load_params", "save_params"]
