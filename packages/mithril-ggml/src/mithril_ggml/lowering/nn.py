"""Convolution, transposed convolution and pooling over NCHW data."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import Emit, Lowerer, Mode, Rule
from .structure import reverse_axis, slice_axis, strided_view

if TYPE_CHECKING:  # pragma: no cover
    from mithril.ir.graph import Node

    from ..emitter import T


def _check_conv(node: Node, mode: Mode) -> str | None:
    if node.attrs["groups"] != 1 and mode.grad:
        return f"ggml cannot differentiate a grouped convolution (groups={node.attrs['groups']}; CONCAT)"
    return None


@dataclass(frozen=True)
class Geometry:
    """A convolution's stride, padding, dilation and output (OH, OW)."""

    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    out_hw: tuple[int, ...]


def _rows(L: Lowerer, t: T, g: int, size: int) -> T:
    return slice_axis(L, t, 0, g * size, (g + 1) * size)


def _grouped(L: Lowerer, x: T, groups: int, one: Callable[[int, T], T]) -> T:
    """``one(g, x's channels of group g)`` for each group, concatenated along the channels."""
    if groups == 1:
        return one(0, x)
    cg = x.shape[1] // groups
    out = None
    for g in range(groups):
        yg = one(g, slice_axis(L, x, 1, g * cg, (g + 1) * cg))
        out = yg if out is None else L.em.concat(out, yg, 1, (yg.shape[0], out.shape[1] + yg.shape[1]) + yg.shape[2:])
    assert out is not None
    return out


def _emit_conv(L: Lowerer, node: Node) -> T:
    """im2col + one matrix product with the (O, C*KH*KW) weight as ggml's first operand.

    That order lets a quantized weight be used (``ggml_conv_2d`` puts the weight second).
    Groups are lowered one by one and concatenated along the channels.
    """
    a = node.attrs
    geo = Geometry(tuple(a["stride"]), tuple(a["padding"]), tuple(a["dilation"]), node.output.known_shape[2:])
    groups = a["groups"]
    x = L.arg(node, 0)
    stored = L.folded_weight(node, 1)
    if groups == 1:
        kernel = node.inputs[1].known_shape[2:]
        if stored is not None:
            return conv_group(L, x, stored, kernel, geo, None)
        w = L.arg(node, 1)
        return conv_group(L, x, w, kernel, geo, None if L.mode.grad else w)
    w = L.arg(node, 1)
    og = w.shape[0] // groups

    def one(g: int, xg: T) -> T:
        wg = _rows(L, w, g, og)
        return conv_group(L, xg, wg, w.shape[2:], geo, wg)

    return _grouped(L, x, groups, one)


def conv_group(L: Lowerer, x: T, w: T, kernel: tuple[int, ...], geo: Geometry, carrier: T | None) -> T:
    """One group: ``x`` (N, C, H, W), ``w`` (O, C, KH, KW) or stored (O, C*KH*KW), its rows maybe
    zero-padded to the quantization block (then the im2col columns are padded alike)."""
    em = L.em
    n, c = x.shape[:2]
    kh, kw = kernel
    o = w.shape[0]
    oh, ow = geo.out_hw
    k = c * kh * kw
    row = w.shape[1] if w.rank == 2 else k
    w2 = w if w.rank == 2 else em.reshape(w, (o, k))
    if carrier is None:
        # im2col reads only its kernel's shape. A stored (2-d) weight has none; and
        # ggml's backward of IM2COL crashes when that kernel itself needs a gradient.
        carrier = em.new((1, c, kh, kw))
    if row == k:  # NCHW from im2col and one product (through BLAS when large: see Emitter.conv2d)
        return em.conv2d(carrier, x, w2, geo.stride, geo.padding, geo.dilation, (oh, ow))
    cols = em.im2col(carrier, x, geo.stride, geo.padding, geo.dilation, (oh, ow))
    cols = em.reshape(cols, (n * oh * ow, k))
    if row != k:
        cols = em.pad(cols, [(0, 0), (0, row - k)])
    y = em.mul_mat(w2, cols)  # (N*OH*OW, O)
    y = em.reshape(y, (n, oh, ow, o))
    return em.transpose(y, (0, 3, 1, 2))  # NCHW


# ------------------------------------------------------- transposed convolution
def dilate(L: Lowerer, t: T, axis: int, factor: int) -> T:
    """``factor - 1`` zeros between the elements of ``axis``: length n becomes (n - 1) * factor + 1."""
    if factor == 1 or t.shape[axis] == 1:
        return t
    em = L.em
    n = t.shape[axis]
    outer, inner = math.prod(t.shape[:axis]), math.prod(t.shape[axis + 1 :])
    spread = em.pad(em.reshape(t, (outer, n, 1, inner)), [(0, 0), (0, 0), (0, factor - 1), (0, 0)])
    full = em.reshape(spread, (outer, n * factor, inner))
    cut = slice_axis(L, full, 1, 0, (n - 1) * factor + 1)
    return em.reshape(cut, t.shape[:axis] + ((n - 1) * factor + 1,) + t.shape[axis + 1 :])


def _emit_conv_transpose(L: Lowerer, node: Node) -> T:
    """A stride-1 convolution of the input with ``stride - 1`` zeros between its elements, padded
    by ``dilation * (k - 1) - padding`` (plus the output padding after), and the kernel flipped with
    its in/out axes swapped. (ggml's own conv_transpose_2d computes only the first sample.)"""
    a = node.attrs
    em = L.em
    x, w = L.arg(node, 0), L.arg(node, 1)
    groups = a["groups"]
    _, og, kh, kw = w.shape
    x = dilate(L, dilate(L, x, 2, a["stride"][0]), 3, a["stride"][1])
    lo = [d * (k - 1) - p for d, k, p in zip(a["dilation"], (kh, kw), a["padding"])]
    hi = [v + op for v, op in zip(lo, a["output_padding"])]
    x = em.pad(x, [(0, 0), (0, 0), (max(lo[0], 0), max(hi[0], 0)), (max(lo[1], 0), max(hi[1], 0))])
    if min(lo + hi) < 0:
        rs = [range(n) for n in x.shape[:2]] + [
            range(max(-lo[i], 0), x.shape[2 + i] - max(-hi[i], 0)) for i in range(2)
        ]
        x = strided_view(L, x, rs, x.shape[:2] + tuple(len(r) for r in rs[2:]))
    geo = Geometry((1, 1), (0, 0), tuple(a["dilation"]), node.output.known_shape[2:])
    cg = w.shape[0] // groups

    def one(g: int, xg: T) -> T:
        wg = _rows(L, w, g, cg)  # (C/g, O/g, KH, KW)
        wg = em.transpose(wg, (1, 0, 2, 3))
        flat = reverse_axis(L, em.reshape(wg, (og, cg, kh * kw)), 2)  # both kernel axes flipped
        return conv_group(L, xg, em.reshape(flat, (og, cg, kh, kw)), (kh, kw), geo, None)

    return _grouped(L, x, groups, one)


def _check_max_pool(node: Node, mode: Mode) -> str | None:
    if tuple(node.attrs["dilation"]) != (1, 1):
        return "dilated max pooling is not supported by ggml_pool_2d"
    return None


def _check_avg_pool(node: Node, mode: Mode) -> str | None:
    if not node.attrs["count_include_pad"] and any(node.attrs["padding"]):
        return "avg_pool2d with count_include_pad=False and padding: ggml_pool_2d divides by the full window"
    return None


def _emit_pool(op: str) -> Emit:
    def emit(L: Lowerer, node: Node) -> T:
        a = node.attrs
        return L.em.pool2d(L.arg(node, 0), op, a["kernel_size"], a["stride"], a["padding"], node.output.known_shape)

    return emit


RULES: dict[str, Rule] = {
    "conv2d": Rule(_emit_conv, _check_conv),
    "conv_transpose2d": Rule(_emit_conv_transpose),
    "max_pool2d": Rule(_emit_pool("max"), _check_max_pool),
    "avg_pool2d": Rule(_emit_pool("avg"), _check_avg_pool),
}
