"""Checked wrappers around the ggml ops the lowering uses.

ggml aborts the whole process when an op's preconditions fail (GGML_ASSERT).
Every wrapper here checks shapes, types and contiguity in Python first and
raises :class:`LoweringBug` instead of calling into C. Every tensor handed out
is contiguous, so ops can be chained without further checks.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ._lib import ggml, op_name
from .blas import BlasOps, use_blas
from .layout import MAX_DIMS, ne_of, numel, permute_args


class LoweringBug(RuntimeError):
    """A precondition the lowering should have guaranteed does not hold (a bug here)."""


class OutOfMetadata(RuntimeError):
    """The sizing pass ran out of its metadata budget; it is retried with more."""


@dataclass(frozen=True)
class T:
    """A ggml tensor with the NumPy shape it stands for."""

    ptr: Any  # ctypes pointer to ggml_tensor
    shape: tuple[int, ...]
    type: int

    @property
    def ne(self) -> tuple[int, int, int, int]:
        return ne_of(self.shape)

    @property
    def rank(self) -> int:
        return len(self.shape)


def _can_repeat(small: Sequence[int], big: Sequence[int]) -> bool:
    return all(b % s == 0 for s, b in zip(small, big))


class Emitter:
    """Creates ggml tensors in one context and records which ops each graph node used.

    ``alloc`` is False for the sizing pass (tensor metadata only); then the
    remaining metadata room is checked before each call.
    """

    def __init__(self, ctx: Any, alloc: bool, grad: bool = False, blas: BlasOps | None = None) -> None:
        self.g = ggml()
        self.ctx = ctx
        self.alloc = alloc
        self.grad = grad
        self.blas = blas  # routes large float32 products to NumPy's BLAS (None: ggml's MUL_MAT only)
        self.tag = -1  # index of the graph node being lowered
        self.ops: dict[int, list[str]] = {}
        self.f32 = self.g.GGML_TYPE_F32
        self._overhead = self.g.ggml_tensor_overhead()

    # ---------------------------------------------------------------- plumbing
    def _room(self, tensors: int = 4) -> None:
        if not self.alloc:
            free = self.g.ggml_get_mem_size(self.ctx) - self.g.ggml_used_mem(self.ctx)
            if free < tensors * self._overhead + 4096:
                raise OutOfMetadata

    def _out(self, ptr: Any, shape: Sequence[int], type_: int | None = None, name: str | None = None) -> T:
        if not ptr:
            raise LoweringBug("ggml returned a null tensor")
        t = T(ptr, tuple(int(d) for d in shape), self.f32 if type_ is None else type_)
        got = tuple(ptr.contents.ne)
        if got != t.ne:
            raise LoweringBug(f"ggml produced ne={list(got)}, expected {list(t.ne)} for shape {list(t.shape)}")
        self.ops.setdefault(self.tag, []).append(name or op_name(ptr))
        return t

    @staticmethod
    def _check_rank(shape: Sequence[int]) -> None:
        if len(shape) > MAX_DIMS:
            raise LoweringBug(f"rank {len(shape)} > {MAX_DIMS}")

    # ------------------------------------------------------------- leaves
    def new(self, shape: Sequence[int], type_: int | None = None) -> T:
        """A fresh tensor; quantized types take a 2-d+ shape whose last axis is a multiple of the block."""
        self._check_rank(shape)
        self._room(1)
        type_ = self.f32 if type_ is None else type_
        ne = ne_of(shape)
        if ne[0] % self.g.ggml_blck_size(type_):
            raise LoweringBug(f"row length {ne[0]} is not a multiple of the block size of type {type_}")
        ptr = self.g.ggml_new_tensor_4d(self.ctx, type_, *ne)
        t = T(ptr, tuple(shape), type_)
        if tuple(ptr.contents.ne) != ne:
            raise LoweringBug("ggml_new_tensor_4d returned a wrong shape")
        self.ops.setdefault(self.tag, []).append("NONE")
        return t

    def write(self, t: T, data: np.ndarray) -> None:
        """Copy data into an allocated F32 or I32 tensor (skipped in the sizing pass)."""
        if not self.alloc:
            return
        dtype = np.int32 if t.type == self.g.GGML_TYPE_I32 else np.float32
        arr = np.ascontiguousarray(np.broadcast_to(np.asarray(data, dtype=dtype), t.shape))
        if t.type not in (self.f32, self.g.GGML_TYPE_I32) or arr.nbytes != self.g.ggml_nbytes(t.ptr):
            raise LoweringBug("write: size or type mismatch")
        ctypes.memmove(t.ptr.contents.data, arr.ctypes.data, arr.nbytes)

    # ------------------------------------------------------------- layout
    def cont(self, t: T) -> T:
        """A contiguous copy.

        For backward graphs this is ``ggml_dup``: ggml's backward of CONT asserts a
        contiguous incoming gradient, DUP's just passes it on.
        """
        self._room()
        fn = self.g.ggml_dup if self.grad else self.g.ggml_cont
        return self._out(fn(self.ctx, t.ptr), t.shape, t.type)

    def reshape(self, t: T, shape: Sequence[int]) -> T:
        shape = tuple(int(d) for d in shape)
        self._check_rank(shape)
        if numel(shape) != numel(t.shape):
            raise LoweringBug(f"reshape {list(t.shape)} -> {list(shape)}")
        if ne_of(shape) == t.ne:
            return T(t.ptr, shape, t.type)
        self._room()
        return self._out(self.g.ggml_reshape_4d(self.ctx, t.ptr, *ne_of(shape)), shape, t.type)

    def transpose(self, t: T, axes: Sequence[int]) -> T:
        """``np.transpose(t, axes)``, made contiguous."""
        axes = tuple(int(a) % max(t.rank, 1) for a in axes)
        if sorted(axes) != list(range(t.rank)):
            raise LoweringBug(f"bad permutation {axes} for rank {t.rank}")
        if axes == tuple(range(t.rank)):
            return t
        shape = tuple(t.shape[a] for a in axes)
        self._room()
        src = t.ptr
        if self.grad:
            # ggml's backward of PERMUTE hands its source a permuted (non-contiguous)
            # gradient; a RESHAPE source makes it contiguous again (ggml_compute_backward)
            src = self._out(self.g.ggml_reshape_4d(self.ctx, t.ptr, *t.ne), t.shape, t.type).ptr
            self._room()
        p = self.g.ggml_permute(self.ctx, src, *permute_args(axes, t.rank))
        return self.cont(self._out(p, shape, t.type))

    def repeat(self, t: T, shape: Sequence[int]) -> T:
        """Broadcast ``t`` to ``shape`` (NumPy rules) by ``ggml_repeat_4d``."""
        shape = tuple(int(d) for d in shape)
        self._check_rank(shape)
        if not _can_repeat(t.ne, ne_of(shape)):
            raise LoweringBug(f"cannot repeat {list(t.shape)} to {list(shape)}")
        if t.ne == ne_of(shape):
            return T(t.ptr, shape, t.type)
        self._room()
        return self._out(self.g.ggml_repeat_4d(self.ctx, t.ptr, *ne_of(shape)), shape, t.type)

    def view(self, t: T, ne: Sequence[int], nb: Sequence[int], offset: int, shape: Sequence[int]) -> T:
        """A strided view (ne, nb in ggml order; nb[0] must be the element size), made contiguous."""
        g = self.g
        esize = g.ggml_element_size(t.ptr)
        if len(ne) != 4 or len(nb) != 4 or nb[0] != esize or t.type != self.f32:
            raise LoweringBug("view: bad arguments")
        data_size = esize * numel(ne)
        last = offset + sum((n - 1) * b for n, b in zip(ne, nb)) + esize
        if data_size + offset > g.ggml_nbytes(t.ptr) or last > g.ggml_nbytes(t.ptr):
            raise LoweringBug("view: out of bounds")
        self._room()
        v = g.ggml_view_4d(self.ctx, t.ptr, ne[0], ne[1], ne[2], ne[3], nb[1], nb[2], nb[3], offset)
        vt = self._out(v, (ne[3], ne[2], ne[1], ne[0]), t.type)
        return self.reshape(self.cont(vt), shape)

    def concat(self, a: T, b: T, axis: int, shape: Sequence[int]) -> T:
        from .layout import gdim

        if a.type != b.type or a.rank != b.rank:
            raise LoweringBug("concat: type or rank mismatch")
        d = gdim(axis, a.rank)
        if any(x != y for i, (x, y) in enumerate(zip(a.ne, b.ne)) if i != d):
            raise LoweringBug(f"concat: {list(a.shape)} and {list(b.shape)} differ off axis {axis}")
        self._room()
        return self._out(self.g.ggml_concat(self.ctx, a.ptr, b.ptr, d), shape, a.type)

    # ------------------------------------------------------------- arithmetic
    def binary(self, op: str, a: T, b: T, shape: Sequence[int]) -> T:
        """``op`` in add/sub/mul/div; ``a`` must have ``shape``, ``b`` must repeat into it."""
        shape = tuple(shape)
        if a.ne != ne_of(shape) or not _can_repeat(b.ne, a.ne) or a.type != self.f32 or b.type != self.f32:
            raise LoweringBug(f"{op}: {list(a.shape)} with {list(b.shape)} -> {list(shape)}")
        fn = {"add": self.g.ggml_add, "sub": self.g.ggml_sub, "mul": self.g.ggml_mul, "div": self.g.ggml_div}[op]
        rows = self._broadcast_rows(a, b)
        if rows is not None:
            a_shape, b_small, b_shape = rows
            a2 = self.reshape(a, a_shape)
            b2 = self.repeat(self.reshape(b, b_small), b_shape)
            self._room()
            return self.reshape(self._out(fn(self.ctx, a2.ptr, b2.ptr), a_shape), shape)
        self._room()
        return self._out(fn(self.ctx, a.ptr, b.ptr), shape)

    def _broadcast_rows(self, a: T, b: T) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
        """Shapes of ``a``, of ``b`` and of ``b`` repeated, that put a broadcast ``b`` along whole rows.

        ggml's binary ops run one vector loop per row of ``b``; a ``b`` of row length 1
        (a per-channel bias of NCHW data) makes that one call per element. Merging the
        leading ggml dimensions in which ``b`` has size 1 into one row and repeating
        ``b`` along it (a small tensor) gives long rows. None when that does not apply.
        """
        if self.grad or b.ne[0] != 1 or a.ne[0] == 1:
            return None
        j = 0
        while j + 2 < MAX_DIMS and b.ne[j + 1] == 1:
            j += 1
        row = numel(a.ne[: j + 1])
        a_ne = (row, *a.ne[j + 1 :]) + (1,) * j
        b_ne = (row, *b.ne[j + 1 :]) + (1,) * j
        if numel(b_ne) * 4 > numel(a.ne):
            return None
        b_small = (1, *b.ne[j + 1 :]) + (1,) * j
        return tuple(reversed(a_ne)), tuple(reversed(b_small)), tuple(reversed(b_ne))

    def scale(self, a: T, s: float, bias: float = 0.0) -> T:
        """``a * s + bias``."""
        self._float(a)
        self._room()
        if bias == 0.0:
            return self._out(self.g.ggml_scale(self.ctx, a.ptr, float(s)), a.shape)
        return self._out(self.g.ggml_scale_bias(self.ctx, a.ptr, float(s), float(bias)), a.shape)

    _UNARY: ClassVar[dict[str, str]] = {
        "neg": "ggml_neg",
        "abs": "ggml_abs",
        "sign": "ggml_sgn",
        "step": "ggml_step",
        "exp": "ggml_exp",
        "log": "ggml_log",
        "sqrt": "ggml_sqrt",
        "sqr": "ggml_sqr",
        "sin": "ggml_sin",
        "cos": "ggml_cos",
        "tanh": "ggml_tanh",
        "sigmoid": "ggml_sigmoid",
        "relu": "ggml_relu",
        "gelu_erf": "ggml_gelu_erf",
        "floor": "ggml_floor",
    }

    def unary(self, name: str, a: T) -> T:
        self._float(a)
        self._room()
        return self._out(getattr(self.g, self._UNARY[name])(self.ctx, a.ptr), a.shape)

    def clamp(self, a: T, lo: float, hi: float) -> T:
        """``min(max(a, lo), hi)`` on a copy (``ggml_clamp`` works in place); NaN becomes ``hi``."""
        self._float(a)
        self._room()
        copy = self._out(self.g.ggml_dup(self.ctx, a.ptr), a.shape)
        return self._out(self.g.ggml_clamp(self.ctx, copy.ptr, float(lo), float(hi)), a.shape)

    def to_i32(self, a: T) -> T:
        """F32 -> I32 (truncating); for 0/1 masks and small whole numbers."""
        self._float(a)
        self._room()
        return self._out(self.g.ggml_cast(self.ctx, a.ptr, self.g.GGML_TYPE_I32), a.shape, self.g.GGML_TYPE_I32)

    def get_rows(self, a: T, idx: T) -> T:
        """``a`` (B, R, L) F32, ``idx`` (B, M) I32 in [0, R) -> (B, M, L): ``out[b, m] = a[b, idx[b, m]]``."""
        self._float(a)
        if a.rank != 3 or idx.rank != 2 or idx.type != self.g.GGML_TYPE_I32 or idx.shape[0] != a.shape[0]:
            raise LoweringBug(f"get_rows: {list(a.shape)} by {list(idx.shape)}")
        self._room()
        shape = (a.shape[0], idx.shape[1], a.shape[2])
        return self._out(self.g.ggml_get_rows(self.ctx, a.ptr, idx.ptr), shape)

    def pad(self, a: T, pads: Sequence[tuple[int, int]]) -> T:
        """Zeros before and after each NumPy axis (``pads[i] = (before, after)``, all >= 0)."""
        self._float(a)
        if len(pads) != a.rank or any(p < 0 for pair in pads for p in pair):
            raise LoweringBug(f"pad: {list(pads)} for shape {list(a.shape)}")
        if not any(p for pair in pads for p in pair):
            return a
        ggml_pads = [p for pair in reversed(list(pads)) for p in pair] + [0] * (2 * (MAX_DIMS - a.rank))
        shape = tuple(d + lo + hi for d, (lo, hi) in zip(a.shape, pads))
        self._room()
        return self._out(self.g.ggml_pad_ext(self.ctx, a.ptr, *ggml_pads), shape)

    def leaky_relu(self, a: T, slope: float) -> T:
        self._float(a)
        self._room()
        return self._out(self.g.ggml_leaky_relu(self.ctx, a.ptr, float(slope), False), a.shape)

    def _float(self, *ts: T) -> None:
        for t in ts:
            if t.type != self.f32:
                raise LoweringBug("expected a float32 tensor")

    # ------------------------------------------------------------- rows
    def _rows(self, a: T) -> None:
        self._float(a)
        if a.rank != 2:
            raise LoweringBug("row ops take (rows, row_length) tensors")

    def sum_rows(self, a: T) -> T:
        """(K, R) -> (K, 1)."""
        self._rows(a)
        self._room()
        return self._out(self.g.ggml_sum_rows(self.ctx, a.ptr), (a.shape[0], 1))

    def max_rows(self, a: T) -> T:
        """(K, R) -> (K, 1), by a max pool over whole rows."""
        self._rows(a)
        r = a.shape[1]
        self._room()
        p = self.g.ggml_pool_1d(self.ctx, a.ptr, self.g.GGML_OP_POOL_MAX, r, r, 0)
        return self._out(p, (a.shape[0], 1))

    def argmax_rows(self, a: T) -> T:
        """(K, R) -> (K,) int32."""
        self._rows(a)
        self._room()
        return self._out(self.g.ggml_argmax(self.ctx, a.ptr), (a.shape[0],), self.g.GGML_TYPE_I32)

    def soft_max(self, a: T) -> T:
        """Softmax over the last NumPy axis."""
        self._float(a)
        self._room()
        return self._out(self.g.ggml_soft_max(self.ctx, a.ptr), a.shape)

    def sum_all(self, a: T) -> T:
        self._float(a)
        self._room()
        return self._out(self.g.ggml_sum(self.ctx, a.ptr), ())

    # ------------------------------------------------------------- matrix products
    def mul_mat(self, a: T, b: T) -> T:
        """ggml_mul_mat: ``a`` is (..., N, K) (maybe quantized), ``b`` is (..., M, K) -> (..., M, N).

        ``b`` carries the full batch; ``a``'s batch dims are 1 or equal to ``b``'s.
        """
        if a.rank < 2 or b.rank < 2 or b.type != self.f32:
            raise LoweringBug("mul_mat: operands must be rank >= 2, right one float32")
        ane, bne = a.ne, b.ne
        if ane[0] != bne[0] or bne[2] % ane[2] or bne[3] % ane[3]:
            raise LoweringBug(f"mul_mat: cannot multiply {list(a.shape)} by {list(b.shape)}")
        blck = self.g.ggml_blck_size(a.type)
        if ane[0] % blck:
            raise LoweringBug("mul_mat: row length not a multiple of the block size")
        rank = max(a.rank, b.rank)
        batch = tuple(reversed((bne[2], bne[3])))[4 - rank :] if rank > 2 else ()
        shape = batch + (b.shape[-2], a.shape[-2])
        m = bne[1] * bne[2] * bne[3]
        if self.blas is not None and ane[2] == ane[3] == 1 and use_blas(a.type, m, ane[1], ane[0]):
            w = self._dequantized(a)
            self._room()
            ptr = self.blas.linear(self.ctx, w.ptr, b.ptr, ane[1], ane[0], m, (ane[1], *bne[1:]))
            return self._out(ptr, shape, name="MUL_MAT(BLAS)")
        self._room()
        return self._out(self.g.ggml_mul_mat(self.ctx, a.ptr, b.ptr), shape)

    def _dequantized(self, w: T) -> T:
        """``w`` as float32: a quantized weight is converted for a BLAS product (ggml's BLAS backend does so)."""
        if w.type == self.f32:
            return w
        self._room()
        return self._out(self.g.ggml_cast(self.ctx, w.ptr, self.f32), w.shape)

    def conv2d(
        self,
        kernel_shape: T,
        x: T,
        w: T,
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        out_hw: Sequence[int],
    ) -> T:
        """NCHW ``x`` convolved with ``w`` (O, C*KH*KW) -> (N, O, OH, OW); ``kernel_shape`` as :meth:`im2col`.

        Through BLAS (see :mod:`mithril_ggml.blas`): im2col into a scratch tensor and
        one ``sgemm`` per image, written in NCHW. Else ggml's IM2COL, MUL_MAT (rows of
        (N*OH*OW, O)) and a transpose to NCHW.
        """
        self._float(x, kernel_shape)
        n, c, h, wd = x.shape
        _, _, kh, kw = kernel_shape.shape
        o, k = w.shape
        oh, ow = (int(d) for d in out_hw)
        if self.blas is not None and x.rank == 4 and k == c * kh * kw and use_blas(w.type, n * oh * ow, o, k):
            (sh, sw), (ph, pw), (dh, dw) = (tuple(int(v) for v in p) for p in (stride, padding, dilation))
            for i, (size, pad, kern, st, dil) in enumerate(((h, ph, kh, sh, dh), (wd, pw, kw, sw, dw))):
                if (size + 2 * pad - dil * (kern - 1) - 1) // st + 1 != (oh, ow)[i]:
                    raise LoweringBug("conv2d: output size disagrees with the geometry")
            padded = self.new((n, c, h + 2 * ph, wd + 2 * pw)) if ph or pw else x
            cols = self.new((n, k, oh * ow))
            w32 = self._dequantized(w)
            self._room()
            shapes = (w.shape, x.shape, padded.shape, cols.shape, (n, o, oh * ow))
            geometry = ((kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow))
            ptr = self.blas.conv2d(self.ctx, w32.ptr, x.ptr, padded.ptr, cols.ptr, shapes, geometry)
            return self.reshape(self._out(ptr, (n, o, oh * ow), name="CONV_2D(BLAS)"), (n, o, oh, ow))
        cols4 = self.im2col(kernel_shape, x, stride, padding, dilation, (oh, ow))
        y = self.mul_mat(w, self.reshape(cols4, (n * oh * ow, k)))
        return self.transpose(self.reshape(y, (n, oh, ow, o)), (0, 3, 1, 2))

    # ------------------------------------------------------------- images
    def im2col(
        self,
        kernel_shape: T,
        x: T,
        stride: Sequence[int],
        padding: Sequence[int],
        dilation: Sequence[int],
        out_hw: Sequence[int],
    ) -> T:
        """NCHW ``x`` -> (N, OH, OW, C*KH*KW); ``kernel_shape`` is any F32 tensor of shape (_, C, KH, KW)."""
        self._float(x, kernel_shape)
        if x.rank != 4 or kernel_shape.rank != 4 or kernel_shape.shape[1] != x.shape[1]:
            raise LoweringBug("im2col: bad shapes")
        n, c = x.shape[:2]
        _, _, kh, kw = kernel_shape.shape
        self._room()
        p = self.g.ggml_im2col(
            self.ctx,
            kernel_shape.ptr,
            x.ptr,
            stride[1],
            stride[0],
            padding[1],
            padding[0],
            dilation[1],
            dilation[0],
            True,
            self.f32,
        )
        return self._out(p, (n, out_hw[0], out_hw[1], c * kh * kw))

    def pool2d(
        self,
        x: T,
        op: str,
        kernel: Sequence[int],
        stride: Sequence[int],
        padding: Sequence[int],
        out_shape: Sequence[int],
    ) -> T:
        self._float(x)
        if x.rank != 4:
            raise LoweringBug("pool2d: NCHW input expected")
        for i in range(2):
            if (x.shape[2 + i] + 2 * padding[i] - kernel[i]) // stride[i] + 1 != out_shape[2 + i]:
                raise LoweringBug("pool2d: output size disagrees with ggml's")
        kind = self.g.GGML_OP_POOL_MAX if op == "max" else self.g.GGML_OP_POOL_AVG
        self._room()
        p = self.g.ggml_pool_2d(
            self.ctx, x.ptr, kind, kernel[1], kernel[0], stride[1], stride[0], float(padding[1]), float(padding[0])
        )
        return self._out(p, out_shape)
