"""Float32 matrix products through NumPy's BLAS, as custom ops inside a ggml graph.

ggml computes an F32 ``MUL_MAT`` as one dot product per output element; with its
BLAS backend (not in the bundled ggml build) it hands batched F32 products to
``sgemm`` instead. This module does the same through NumPy's BLAS: a
``GGML_OP_CUSTOM`` node whose callback runs ``np.matmul`` on NumPy views of the
operands and writes into the node's own data. The other ops stay in ggml.

A product is routed here when it has at least :data:`MIN_ROWS` rows and at least
:data:`MIN_MACS` multiply-adds (below that the callback costs more than it saves)
and its weight is float32. Gradient graphs keep ggml's ``MUL_MAT`` (ggml has no
backward for a custom op).

The callback runs on each of ggml's threads (``ith`` of ``nth``), each on its
rows; NumPy releases the GIL inside BLAS. An exception in a callback cannot
cross into C: it is stored in :attr:`BlasOps.errors`, and the executable raises
it as an ``EvaluationError`` after ``ggml_graph_compute`` returns.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._lib import ggml

#: fewest rows (of the activation operand) for a BLAS product with a float32 weight
MIN_ROWS = 16
#: ... with a quantized weight (dequantized for each call; ggml's BLAS backend uses 32)
MIN_ROWS_QUANTIZED = 32
#: fewest multiply-adds for a BLAS product
MIN_MACS = 1 << 16


def _array(t: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A NumPy view of a contiguous F32 tensor's data."""
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    buf = (ctypes.c_char * (n * 4)).from_address(t.contents.data)
    return np.frombuffer(memoryview(buf), dtype=np.float32).reshape(shape)


class _Product:
    """One BLAS node: NumPy views of its ggml tensors are made at its first run (data is fixed by then)."""

    def __init__(self, tensors: tuple[tuple[Any, tuple[int, ...]], ...]) -> None:
        self.tensors = tensors  # (ggml tensor pointer, NumPy shape) of each array it reads or writes
        self.views: list[np.ndarray] | None = None

    def run(self, ith: int, nth: int) -> None:
        if self.views is None:
            self.views = [_array(t, shape) for t, shape in self.tensors]
            self.prepare(*self.views)
        self.compute(ith, nth, *self.views)

    def prepare(self, *views: np.ndarray) -> None:
        """Once, before the first run."""

    def compute(self, ith: int, nth: int, *views: np.ndarray) -> None:
        raise NotImplementedError


def _share(n: int, ith: int, nth: int) -> slice:
    """Thread ``ith`` of ``nth``'s part of ``range(n)``."""
    return slice(n * ith // nth, n * (ith + 1) // nth)


class _Linear(_Product):
    """``out = x @ w^T``: ``w`` (N, K), ``x`` (M, K), ``out`` (M, N)."""

    def compute(self, ith: int, nth: int, *views: np.ndarray) -> None:
        w, x, out = views
        rows = _share(x.shape[0], ith, nth)
        if rows.start < rows.stop:
            np.matmul(x[rows], w.T, out=out[rows])


class _Conv(_Product):
    """NCHW convolution by im2col in the layout ``sgemm`` reads best: ``out[n] = w @ cols[n]``.

    ``cols[n]`` is (C*KH*KW, OH*OW): for each (c, kh, kw) a shifted window of the
    (padded) image, copied by rows. Views: ``w`` (O, C*KH*KW), ``x`` (N, C, H, W),
    ``padded`` (N, C, H + 2 PH, W + 2 PW) or ``x`` itself, ``cols``, ``out`` (N, O, OH*OW).
    """

    def __init__(
        self,
        tensors: tuple[tuple[Any, tuple[int, ...]], ...],
        kernel: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        out_hw: tuple[int, int],
    ) -> None:
        super().__init__(tensors)
        self.kernel, self.stride, self.padding, self.dilation, self.out_hw = kernel, stride, padding, dilation, out_hw

    def prepare(self, *views: np.ndarray) -> None:
        padded = views[2]
        if any(self.padding):
            padded[...] = 0.0  # the border stays zero: runs write the interior only

    def compute(self, ith: int, nth: int, *views: np.ndarray) -> None:
        w, x, padded, cols, out = views
        part = _share(x.shape[0], ith, nth)
        if part.start >= part.stop:
            return
        (ph, pw), (h, wd) = self.padding, x.shape[2:]
        if any(self.padding):
            padded[part, :, ph : ph + h, pw : pw + wd] = x[part]
        src = padded[part]
        n, c = src.shape[:2]
        (kh, kw), (sh, sw), (dh, dw), (oh, ow) = self.kernel, self.stride, self.dilation, self.out_hw
        s = src.strides
        windows = np.lib.stride_tricks.as_strided(
            src, (n, c, kh, kw, oh, ow), (s[0], s[1], dh * s[2], dw * s[3], sh * s[2], sw * s[3]), writeable=False
        )
        dst = cols[part]
        dst.reshape(windows.shape)[...] = windows
        np.matmul(w, dst, out=out[part])


@dataclass
class BlasOps:
    """The BLAS nodes of one ggml context and the one callback they share (kept alive here)."""

    products: list[_Product] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._callback = ggml().ggml_custom_op_t(self._run)

    def _run(self, dst: Any, ith: int, nth: int, userdata: int | None) -> None:
        try:
            self.products[int(userdata or 0)].run(ith, nth)
        except BaseException as e:  # cannot propagate through C
            self.errors.append(e)

    def _node(self, ctx: Any, args: list[Any], out_ne: tuple[int, int, int, int]) -> Any:
        g = ggml()
        srcs = (ctypes.POINTER(g.ggml_tensor) * len(args))(*args)
        index = ctypes.c_void_p(len(self.products))
        return g.ggml_custom_4d(ctx, g.GGML_TYPE_F32, *out_ne, srcs, len(args), self._callback, -1, index)

    def linear(self, ctx: Any, w: Any, x: Any, n: int, k: int, m: int, out_ne: tuple[int, int, int, int]) -> Any:
        """A node ``x @ w^T`` (``w`` (n, k), ``x`` m rows of k; the output has ``out_ne``); its tensor pointer."""
        ptr = self._node(ctx, [w, x], out_ne)
        if ptr:
            self.products.append(_Linear(((w, (n, k)), (x, (m, k)), (ptr, (m, n)))))
        return ptr

    def conv2d(
        self,
        ctx: Any,
        w: Any,
        x: Any,
        padded: Any,
        cols: Any,
        shapes: tuple[tuple[int, ...], ...],
        geometry: tuple[tuple[int, int], ...],
    ) -> Any:
        """A :class:`_Conv` node: ``shapes`` of w, x, padded, cols and the output; ``geometry`` its
        kernel, stride, padding, dilation and output size."""
        out_shape = shapes[4]
        ptr = self._node(ctx, [w, x, padded, cols], (out_shape[2], out_shape[1], out_shape[0], 1))
        if ptr:
            self.products.append(_Conv(tuple(zip((w, x, padded, cols, ptr), shapes)), *geometry))
        return ptr


def use_blas(w_type: int, m: int, n: int, k: int) -> bool:
    """Whether a product of an ``(m, k)`` activation by an ``(n, k)`` weight of ggml type ``w_type`` goes to BLAS.

    A quantized weight is dequantized first (once per call), so it takes more rows.
    """
    g = ggml()
    rows = MIN_ROWS if w_type == g.GGML_TYPE_F32 else MIN_ROWS_QUANTIZED
    return w_type in BLAS_TYPES and m >= rows and m * n * k >= MIN_MACS


#: weight types a BLAS product takes (float32, and the quantized types ggml can convert to it)
BLAS_TYPES = frozenset({0, 2, 8})  # GGML_TYPE_F32, GGML_TYPE_Q4_0, GGML_TYPE_Q8_0
