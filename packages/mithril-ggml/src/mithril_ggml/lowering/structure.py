"""Matrix products and data movement: matmul, transpose, reshape, concat, slice."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..layout import MAX_DIMS, ne_of
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
    out = node.output.shape
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
    return L.em.reshape(L.arg(node, 0), node.output.shape)


def _emit_broadcast_to(L: Lowerer, node: Node) -> T:
    return L.em.repeat(L.arg(node, 0), node.output.shape)


# ------------------------------------------------------------------ concat
def _check_concat(node: Node, mode: Mode) -> str | None:
    if mode.grad:
        return "ggml cannot differentiate CONCAT"
    return None


def _emit_concat(L: Lowerer, node: Node) -> T:
    rank = len(node.output.shape)
    axis = node.attrs["axis"] % rank
    acc = L.arg(node, 0)
    for i in range(1, len(node.inputs)):
        nxt = L.arg(node, i)
        shape = tuple(d + nxt.shape[axis] if k == axis else d for k, d in enumerate(acc.shape))
        acc = L.em.concat(acc, nxt, axis, shape)
    return acc


# ------------------------------------------------------------------- slice
def _ranges(node: Node) -> list[range]:
    shape = node.inputs[0].shape
    return [
        range(n)[slice(a, z, s)]
        for n, a, z, s in zip(shape, node.attrs["starts"], node.attrs["stops"], node.attrs["steps"])
    ]


def _check_slice(node: Node, mode: Mode) -> str | None:
    rs = _ranges(node)
    if any(r.step < 0 for r in rs):
        return "negative slice steps are not supported by ggml views"
    if any(len(r) == 0 for r in rs):
        return "empty slices are not supported (ggml has no empty tensors)"
    rank = len(node.inputs[0].shape)
    if len(rs) == rank and rs[-1].step != 1 and rank >= MAX_DIMS:
        return f"a strided slice of the last axis needs a spare dimension (rank {rank} < {MAX_DIMS})"
    return None


def _emit_slice(L: Lowerer, node: Node) -> T:
    t = L.arg(node, 0)
    rs = _ranges(node) + [range(n) for n in t.shape[len(node.attrs["starts"]) :]]
    return strided_view(L, t, rs, node.output.shape)


def strided_view(L: Lowerer, t: T, rs: list[range], shape: tuple[int, ...]) -> T:
    """``t[r0, r1, ...]`` (one non-empty, non-negative-step range per axis), contiguous."""
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
