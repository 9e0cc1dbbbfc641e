"""``ml.GGMLBackend``: inference through one ggml graph per compiled shape set."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mithril.backend import Backend, Kernel
from mithril.dtypes import DType, dtype_of_numpy
from mithril.errors import UnsupportedError

from ._lib import ggml

if TYPE_CHECKING:  # pragma: no cover
    from mithril.ir.graph import Graph

    from .executable import GGMLExecutable

QUANTIZE_MODES = (None, "int8", "int4")
MAX_THREADS = 512  # GGML_MAX_N_THREADS


class GGMLBackend(Backend):
    """CPU inference with ggml; arrays at the user boundary are NumPy arrays.

    ``quantize="int8"`` / ``"int4"`` stores matrix-product weights as Q8_0 / Q4_0
    (see :mod:`mithril_ggml.weights`). ``n_threads`` defaults to ``os.cpu_count()``.
    There are no per-primitive kernels: :meth:`lower` builds a ggml graph instead.
    """

    name: ClassVar[str] = "ggml"
    distribution: ClassVar[str] = "mithril-ggml"
    supported_dtypes: ClassVar[tuple[DType, ...]] = (DType.float32,)
    supports_jit: ClassVar[bool] = False
    supports_training: ClassVar[bool] = False
    differentiates_natively = True  # an instance attribute of Backend (torch and jax choose per instance)

    def __init__(
        self,
        dtype: DType = DType.float32,
        quantize: str | None = None,
        n_threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        super().__init__(dtype, device)
        if device != "cpu":
            raise UnsupportedError(f"GGMLBackend runs on the CPU only, not device={device!r}")
        if quantize not in QUANTIZE_MODES:
            raise UnsupportedError(f"GGMLBackend: quantize must be one of {list(QUANTIZE_MODES)}, got {quantize!r}")
        if n_threads is not None and (not isinstance(n_threads, int) or not 1 <= n_threads <= MAX_THREADS):
            raise UnsupportedError(f"GGMLBackend: n_threads must be an int in [1, {MAX_THREADS}], got {n_threads!r}")
        ggml()  # fail here, with the install hint, when ggml-python cannot load
        self.quantize = quantize
        self.n_threads = n_threads or min(os.cpu_count() or 1, MAX_THREADS)
        self._rng = np.random.default_rng()

    # ----------------------------------------------------------------- lowering
    def core_kernels(self) -> Mapping[str, Kernel]:
        """None: this backend lowers whole graphs (see :meth:`lower`)."""
        return {}

    def lower(
        self, graph: Graph, *, jit: bool = False, wrt: tuple[str, ...] = (), source_path: str | None = None
    ) -> GGMLExecutable:
        """Build one ggml graph for ``graph`` (``jit`` is irrelevant: the graph is static)."""
        from .executable import GGMLExecutable

        exe = GGMLExecutable(graph, quantize=self.quantize, n_threads=self.n_threads, wrt=tuple(wrt))
        if source_path is not None and exe.source is not None:
            with open(source_path, "w", encoding="utf-8") as f:
                f.write(exe.source + "\n")
        return exe

    # ------------------------------------------------------------------- dtypes
    def _native_dtype(self, dtype: DType) -> Any:
        return dtype.numpy

    def dtype_of(self, x: Any) -> DType:
        return dtype_of_numpy(np.asarray(x).dtype)

    def shape_of(self, x: Any) -> tuple[int, ...]:
        return tuple(np.shape(x))

    def is_array(self, x: Any) -> bool:
        return isinstance(x, np.ndarray)

    # ------------------------------------------------------------------ helpers
    def array(self, data: Any, dtype: DType | None = None) -> np.ndarray:
        arr = np.asarray(data)
        if dtype is not None:
            return arr.astype(dtype.numpy)
        if arr.dtype.kind == "f":
            return arr.astype(self.dtype.numpy)
        return arr

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.array(x)

    def seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def randn(self, *shape: int) -> np.ndarray:
        return self._rng.standard_normal(shape, dtype=np.float32)

    def rand(self, *shape: int) -> np.ndarray:
        return self._rng.random(shape, dtype=np.float32)

    def zeros(self, *shape: int, dtype: DType | None = None) -> np.ndarray:
        return np.zeros(shape, dtype=(dtype or self.dtype).numpy)

    def ones(self, *shape: int, dtype: DType | None = None) -> np.ndarray:
        return np.ones(shape, dtype=(dtype or self.dtype).numpy)

    # NumPy conveniences for user code (there are no kernels to route them through)
    def matmul(self, a: Any, b: Any) -> np.ndarray:
        return np.matmul(a, b)

    def mean(self, x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> np.ndarray:
        return np.mean(x, axis=_axis(axis), keepdims=keepdims)

    def sum(self, x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> np.ndarray:
        return np.sum(x, axis=_axis(axis), keepdims=keepdims)

    def max(self, x: Any, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> np.ndarray:
        return np.max(x, axis=_axis(axis), keepdims=keepdims)

    def argmax(self, x: Any, axis: int = -1) -> np.ndarray:
        return np.argmax(x, axis=axis)

    def exp(self, x: Any) -> np.ndarray:
        return np.exp(x)

    def log(self, x: Any) -> np.ndarray:
        return np.log(x)

    def sqrt(self, x: Any) -> np.ndarray:
        return np.sqrt(x)

    def relu(self, x: Any) -> np.ndarray:
        return np.maximum(x, 0)

    def softmax(self, x: Any, axis: int = -1) -> np.ndarray:
        e = np.exp(x - np.max(x, axis=axis, keepdims=True))
        return e / np.sum(e, axis=axis, keepdims=True)

    def transpose(self, x: Any, axes: Sequence[int] | None = None) -> np.ndarray:
        return np.transpose(x, axes)

    def reshape(self, x: Any, shape: Sequence[int]) -> np.ndarray:
        return np.reshape(x, tuple(shape))

    def concat(self, xs: Sequence[Any], axis: int = 0) -> np.ndarray:
        return np.concatenate(list(xs), axis=axis)

    def __repr__(self) -> str:
        return f"GGMLBackend(dtype={self.dtype!r}, quantize={self.quantize!r}, n_threads={self.n_threads})"


def _axis(axis: int | Sequence[int] | None) -> int | tuple[int, ...] | None:
    return axis if axis is None or isinstance(axis, int) else tuple(axis)
