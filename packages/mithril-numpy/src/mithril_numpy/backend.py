"""The NumPy backend: the reference every other backend is checked against."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from mithril.backend import Backend, Kernel
from mithril.dtypes import DType, dtype_of_numpy
from mithril.errors import UnsupportedError

from . import inplace, rng
from .kernels import build_kernels
from .workspace import kernel_memory as _kernel_memory

_INT = np.dtype(np.int64)
_BOOL = np.dtype(np.bool_)


def _shape(shape: tuple[Any, ...]) -> tuple[int, ...]:
    """``f(2, 3)`` and ``f((2, 3))`` both mean shape (2, 3)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(d) for d in shape)


class NumpyBackend(Backend):
    """NumPy on the CPU, float16/32/64.

    Arrays are ``np.ndarray``; NumPy scalars (``np.float32(1.0)``...) also count as
    arrays, since NumPy itself returns them for 0-d results. Random numbers come
    from a ``np.random.Generator`` owned by this instance (fresh entropy until
    :meth:`seed` is called).
    """

    name: ClassVar[str] = "numpy"
    distribution: ClassVar[str] = "mithril-numpy"
    supported_dtypes: ClassVar[tuple[DType, ...]] = (DType.float16, DType.float32, DType.float64)

    def __init__(self, dtype: DType = DType.float32, device: str = "cpu") -> None:
        if device != "cpu":
            raise UnsupportedError(f"NumpyBackend runs on the CPU only: device must be 'cpu', got {device!r}")
        super().__init__(dtype, device)
        self._float = dtype.numpy
        self._rng = np.random.default_rng()
        self._core: dict[str, Kernel] | None = None

    #: what the kernels allocate beyond their outputs, for memory_report() (mithril_numpy.workspace)
    kernel_memory = staticmethod(_kernel_memory)

    # ---------------------------------------------------------------- kernels
    def core_kernels(self) -> Mapping[str, Kernel]:
        if self._core is None:
            self._core = build_kernels(self._float)
        return self._core

    fresh_primitives: ClassVar[frozenset[str]] = inplace.FRESH

    def inplace_kernels(self, *, jit: bool) -> Mapping[str, Kernel]:
        """Element-wise ufuncs into a dead input's buffer (:mod:`mithril_numpy.inplace`)."""
        return inplace.inplace_kernels()

    # ----------------------------------------------------------------- dtypes
    def _native_dtype(self, dtype: DType) -> np.dtype:
        try:
            return dtype.numpy
        except TypeError:
            raise UnsupportedError(f"NumpyBackend has no {dtype.value} (NumPy has no such dtype)") from None

    def _resolve(self, dtype: DType | None) -> np.dtype:
        return self._float if dtype is None else self._native_dtype(dtype)

    def dtype_of(self, x: Any) -> DType:
        try:
            return dtype_of_numpy(x.dtype)
        except TypeError:
            raise UnsupportedError(f"NumpyBackend: arrays of dtype {x.dtype} are not supported") from None

    def shape_of(self, x: Any) -> tuple[int, ...]:
        return tuple(x.shape)

    def is_array(self, x: Any) -> bool:
        return isinstance(x, (np.ndarray, np.number, np.bool_))

    # ---------------------------------------------------------------- helpers
    def array(self, data: Any, dtype: DType | None = None) -> np.ndarray:
        """A new array: floats get the backend dtype, ints int64, bools bool, unless ``dtype`` says."""
        if dtype is not None:
            return np.array(data, dtype=self._native_dtype(dtype))
        arr = np.array(data)
        kind = arr.dtype.kind
        if kind == "f":
            target = self._float
        elif kind in "iu":
            target = _INT
        elif kind == "b":
            target = _BOOL
        else:
            raise UnsupportedError(f"NumpyBackend.array: cannot make an array of {arr.dtype} data")
        return arr.astype(target, copy=False)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.array(x, copy=True)

    def seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def randn(self, *shape: int) -> np.ndarray:
        if self._float == np.float16:
            return self._rng.standard_normal(_shape(shape), dtype=np.float32).astype(np.float16)
        return self._rng.standard_normal(_shape(shape), dtype=self._float)

    def rand(self, *shape: int) -> np.ndarray:
        if self._float == np.float16:
            out = self._rng.random(_shape(shape), dtype=np.float32).astype(np.float16)
            return np.minimum(out, np.float16(1.0) - np.finfo(np.float16).epsneg)  # rounding may reach 1.0
        return self._rng.random(_shape(shape), dtype=self._float)

    def next_seed(self) -> int:
        """The seed of one call of a graph with random primitives, from this backend's generator."""
        return int(self._rng.integers(2**63))

    def random_key(self, seed: int, stream: int) -> np.random.Generator:
        """A generator of its own for one random node (see :mod:`mithril_numpy.rng`)."""
        return rng.random_key(seed, stream)

    def zeros(self, *shape: int, dtype: DType | None = None) -> np.ndarray:
        return np.zeros(_shape(shape), dtype=self._resolve(dtype))

    def ones(self, *shape: int, dtype: DType | None = None) -> np.ndarray:
        return np.ones(_shape(shape), dtype=self._resolve(dtype))

    def full(self, shape: Sequence[int], value: float, dtype: DType | None = None) -> np.ndarray:
        return np.full(_shape(tuple(shape)), value, dtype=self._resolve(dtype))

    # -------------------------------------------------------------- execution
    def constant(self, value: Any) -> np.ndarray:
        """A read-only array (floats get the backend dtype): generated code shares it across calls."""
        out = self.array(value)
        out.flags.writeable = False
        return out
