"""Matrix products and data movement: matmul, transpose, reshape, concat, slice."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..layout import MAX_DIMS, data_shape, ne_of
from .base import Lowerer, Mode, Rule

if TYPE_CHECKING:  # pragma: no cover
    from mithril.ir.graph import Node

    from ..emitter import T


def swap_last(rank: int) -> tuple[int, ...]:
    return tuple(range(rank - 2)) + (rank - 1, rank - 2)


# ------------------------------------------------------------------ matmul
def _emit_matmul(L: Lowerer, node: Node) -> T:
    """``x @ y`` = ggml_mul_mat(y^T, x): ggml's first operand is the one stored by rows of K."""
    em = L.em
    out = node.output.known_shape
    batch = out[:-2]
    a = L.folded_weight(node, 1)
    if a is None:
        y = L.arg(node, 1)
        a = em.transpose(y, swap_last(y.rank))
    b = L.arg(node, 0)
    if ne_of(b.shape[:-2]) != ne_of(batch):
        b = em.repeat(b, batch + b.shape[-2:])
    if L.mode.grad and ne_of(a.shape[:-2]) != ne_of(batch):
        # ggml's MUL_MAT backward cannot reduce a broadcast over the 4th dimension
        a = em.repeat(a, batch + a.shape[-2:])
    return em.reshape(em.mul_mat(a, b), out)


# --------------------------------------------------------------- transpose
def _emit_transpose(L: Lowerer, node: Node) -> T:
    t = L.arg(node, 0)
    axes = node.attrs["axes"]
    if axes is None:
        axes = tuple(reversed(range(t.rank)))
    return L.em.transpose(t, axes)


def _emit_reshape(L: Lowerer, node: Node) -> T:
    return L.em.reshape(L.arg(node, 0), data_shape(node.output.known_shape))


def _emit_broadcast_to(L: Lowerer, node: Node) -> T:
    return L.em.repeat(L.arg(node, 0), node.output.known_shape)


# ------------------------------------------------------------------ concat
def _check_concat(node: Node, mode: Mode) -> str | None:
    if mode.grad:
        return "ggml cannot differentiate CONCAT"
    return None


def _emit_concat(L: Lowerer, node: Node) -> T:
    rank = len(node.output.known_shape)
    axis = node.attrs["axis"] % rank
    acc = L.arg(node, 0)
    for i in range(1, len(node.inputs)):
        nxt = L.arg(node, i)
        shape = tuple(d + nxt.shape[axis] if k == axis else d for k, d in enumerate(acc.shape))
        acc = L.em.concat(acc, nxt, axis, shape)
    return acc


# ------------------------------------------------------------------- slice
def _ranges(node: Node) -> list[range]:
    shape = node.inputs[0].known_shape
    return [
        range(n)[slice(a, z, s)]
        for n, a, z, s in zip(shape, node.attrs["starts"], node.attrs["stops"], node.attrs["steps"])
    ]


def _check_slice(node: Node, mode: Mode) -> str | None:
    if any(len(r) == 0 for r in _ranges(node)):
        return "empty slices are not supported (ggml has no empty tensors)"
    return None


def _emit_slice(L: Lowerer, node: Node) -> T:
    """A strided view over positive-step ranges of the same elements, then each axis with a
    negative step reversed; a strided last axis of a rank-4 tensor is sliced in a second view."""
    t = L.arg(node, 0)
    rs = _ranges(node) + [range(n) for n in t.shape[len(node.attrs["starts"]) :]]
    fwd = [r if r.step > 0 else r[::-1] for r in rs]
    shape = node.output.known_shape
    if t.rank >= MAX_DIMS and fwd[-1].step != 1:
        mid = strided_view(L, t, fwd[:-1] + [range(t.shape[-1])], shape[:-1] + (t.shape[-1],))
        rows = math.prod(shape[:-1])
        flat = L.em.reshape(mid, (rows, t.shape[-1]))
        out = L.em.reshape(strided_view(L, flat, [range(rows), fwd[-1]], (rows, shape[-1])), shape)
    else:
        out = strided_view(L, t, fwd, shape)
    for axis, r in enumerate(rs):
        if r.step < 0:
            out = reverse_axis(L, out, axis)
    return out


def reverse_axis(L: Lowerer, t: T, axis: int) -> T:
    """``t`` reversed along ``axis``: ``ggml_get_rows`` over the (outer, n, inner) view."""
    n = t.shape[axis]
    if n == 1:
        return t
    outer, inner = math.prod(t.shape[:axis]), math.prod(t.shape[axis + 1 :])
    em = L.em
    idx = em.new((outer, n), em.g.GGML_TYPE_I32)
    em.write(idx, np.broadcast_to(np.arange(n - 1, -1, -1, dtype=np.int32), (outer, n)))
    return em.reshape(em.get_rows(em.reshape(t, (outer, n, inner)), idx), t.shape)


def strided_view(L: Lowerer, t: T, rs: list[range], shape: tuple[int, ...]) -> T:
    """``t[r0, r1, ...]`` (one non-empty, positive-step range per axis), contiguous."""
    rank = t.rank
    esize = 4
    strides = [esize] * rank  # contiguous NumPy strides in bytes
    for i in range(rank - 2, -1, -1):
        strides[i] = strides[i + 1] * t.shape[i + 1]
    offset = sum(r.start * s for r, s in zip(rs, strides))
    ne = [len(r) for r in reversed(rs)]
    nb = [s * r.step for r, s in zip(reversed(rs), reversed(strides))]
    if nb and nb[0] != esize:  # a strided last axis: view it as ggml dimension 1 of a size-1 dimension 0
        ne, nb = [1] + ne, [esize] + nb
    if not ne:
        ne, nb = [1], [esize]
    ne += [1] * (4 - len(ne))
    while len(nb) < 4:
        nb.append(nb[-1] * ne[len(nb) - 1])
    return L.em.view(t, ne, nb, offset, shape)


def slice_axis(L: Lowerer, t: T, axis: int, start: int, stop: int) -> T:
    """``t`` restricted to ``start:stop`` along ``axis``, contiguous."""
    rs = [range(start, stop) if i == axis else range(n) for i, n in enumerate(t.shape)]
    shape = tuple(stop - start if i == axis else n for i, n in enumerate(t.shape))
    return strided_view(L, t, rs, shape)


RULES: dict[str, Rule] = {
    "matmul": Rule(_emit_matmul),
    "transpose": Rule(_emit_transpose),
    "reshape": Rule(_emit_reshape),
    "flatten": Rule(_emit_reshape),
    "unflatten": Rule(_emit_reshape),  # a reshape to the concrete output shape
    "reshape_as": Rule(_emit_reshape),  # its second input only lends its shape
    "broadcast_to": Rule(_emit_broadcast_to),
    "concat": Rule(_emit_concat, _check_concat),
    "slice": Rule(_emit_slice, _check_slice),
}
