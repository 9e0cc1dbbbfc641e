"""Helpers shared by gradient rules (they run on concrete shapes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..ir.graph import GraphBuilder, Value


def unbroadcast(b: GraphBuilder, g: Value, shape: tuple[int, ...]) -> Value:
    """Sum ``g`` down to ``shape``, undoing NumPy broadcasting."""
    gshape = g.known_shape
    if gshape == tuple(shape):
        return g
    lead = len(gshape) - len(shape)
    axes = list(range(lead))
    axes += [lead + i for i, d in enumerate(shape) if d == 1 and gshape[lead + i] != 1]
    out = b.emit("sum", g, axis=tuple(axes), keepdims=False) if axes else g
    if out.shape != tuple(shape):
        out = b.emit("reshape", out, shape=tuple(shape))
    return out


def expand_reduced(
    b: GraphBuilder, g: Value, in_shape: tuple[int, ...], axis: tuple[int, ...] | None, keepdims: bool
) -> Value:
    """Broadcast the cotangent of a reduction back over the reduced axes."""
    rank = len(in_shape)
    axes = tuple(range(rank)) if axis is None else tuple(a % rank for a in axis)
    if not keepdims:
        kshape = tuple(1 if i in axes else d for i, d in enumerate(in_shape))
        g = b.emit("reshape", g, shape=kshape)
    return b.emit("broadcast_to", g, shape=tuple(in_shape))


def reduced_count(in_shape: tuple[int, ...], axis: tuple[int, ...] | None) -> int:
    rank = len(in_shape)
    axes = range(rank) if axis is None else [a % rank for a in axis]
    n = 1
    for a in axes:
        n *= in_shape[a]
    return n
