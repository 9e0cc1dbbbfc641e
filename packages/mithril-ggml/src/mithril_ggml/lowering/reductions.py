"""Reductions over axes, argmax, softmax and log-softmax.

Every reduction merges each run of consecutive reduced (or kept) axes into one,
moves the reduced ones last (one permute), views the data as (kept, reduced) rows
and reduces rows: ggml reduces along ``ne[0]`` only. An input of more than 4 axes
(only its flat data is in ggml) first loses reduced runs, the last one at a time,
through (outer, run, inner) views, until 4 merged axes are left.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..layout import MAX_DIMS, data_shape
from .base import Emit, Lowerer, Mode, Rule

if TYPE_CHECKING:  # pragma: no cover
    from mithril.ir.graph import Node

    from ..emitter import T


def _axes(node: Node) -> tuple[int, ...]:
    rank = len(node.inputs[0].known_shape)
    axis = node.attrs["axis"]
    if axis is None:
        return tuple(range(rank))
    return tuple(sorted({a % rank for a in axis})) if rank else ()


def as_rows(L: Lowerer, t: T, axes: tuple[int, ...]) -> T:
    """``t`` as a (kept, reduced) matrix, reduced axes last."""
    keep = [i for i in range(t.rank) if i not in axes]
    t = L.em.transpose(t, keep + list(axes))
    k = math.prod(t.shape[: len(keep)])
    return L.em.reshape(t, (k, math.prod(t.shape[len(keep) :])))


def _emit_reduce(kind: str) -> Emit:
    def emit(L: Lowerer, node: Node) -> T:
        em = L.em
        dims, reduced = _runs(tuple(node.inputs[0].known_shape), set(_axes(node)))
        t = L.arg(node, 0)
        while len(dims) > MAX_DIMS:  # reduce the last reduced run of a (outer, run, inner) view
            i = max(k for k, r in enumerate(reduced) if r)
            view = em.reshape(t, (math.prod(dims[:i]), dims[i], math.prod(dims[i + 1 :])))
            t = _reduce_rows(L, kind, as_rows(L, view, (1,)))
            dims, reduced = _runs(dims[:i] + dims[i + 1 :], {k for k, r in enumerate(reduced) if r and k < i})
        t = em.reshape(t, dims)
        r = _reduce_rows(L, kind, as_rows(L, t, tuple(k for k, r in enumerate(reduced) if r)))
        return em.reshape(r, data_shape(node.output.known_shape))

    return emit


def _runs(shape: tuple[int, ...], axes: set[int]) -> tuple[tuple[int, ...], list[bool]]:
    """``shape`` with each run of consecutive reduced (or kept) axes merged into one (contiguous data):
    the dims and whether each is reduced."""
    dims: list[int] = []
    reduced: list[bool] = []
    for k, d in enumerate(shape):
        r = k in axes
        if reduced and reduced[-1] == r:
            dims[-1] *= d
        else:
            dims.append(d)
            reduced.append(r)
    return tuple(dims), reduced


def _reduce_rows(L: Lowerer, kind: str, rows: T) -> T:
    em = L.em
    if kind in ("sum", "mean"):
        r = em.sum_rows(rows)
        return em.scale(r, 1.0 / rows.shape[1]) if kind == "mean" else r
    if kind == "max":
        return em.max_rows(rows)
    return em.unary("neg", em.max_rows(em.unary("neg", rows)))  # min = -max(-x)


def _check_extreme(node: Node, mode: Mode) -> str | None:
    if mode.grad:
        return "ggml cannot differentiate max/min reductions (POOL_1D)"
    return None


def _emit_argmax(L: Lowerer, node: Node) -> T:
    rows = as_rows(L, L.arg(node, 0), _axes(node))
    return L.em.reshape(L.em.argmax_rows(rows), node.output.known_shape)


def _check_argmax(node: Node, mode: Mode) -> str | None:
    if len(_axes(node)) != 1:
        return "argmax over more than one axis"
    return None


# ----------------------------------------------------------------- softmax
def _last_axis_apply(L: Lowerer, node: Node, fn: Callable[[T], T]) -> T:
    t = L.arg(node, 0)
    if t.rank == 0:
        return L.em.reshape(fn(L.em.reshape(t, (1,))), ())
    ax = node.attrs["axis"] % t.rank
    perm = [i for i in range(t.rank) if i != ax] + [ax]
    inv = [perm.index(i) for i in range(t.rank)]
    y = fn(L.em.transpose(t, perm))
    return L.em.transpose(y, inv)


def _log_softmax_rows(L: Lowerer, t: T) -> T:
    """x - max - log(sum(exp(x - max))) along the last axis (max-shifted for stability)."""
    em = L.em
    if L.mode.grad:  # ggml cannot differentiate the max (POOL_1D); log(softmax) it can
        return em.unary("log", em.soft_max(t))
    rows = em.reshape(t, (math.prod(t.shape[:-1]), t.shape[-1]))
    shifted = em.binary("sub", rows, em.max_rows(rows), rows.shape)
    lse = em.unary("log", em.sum_rows(em.unary("exp", shifted)))
    return em.reshape(em.binary("sub", shifted, lse, rows.shape), t.shape)


RULES: dict[str, Rule] = {
    "sum": Rule(_emit_reduce("sum")),
    "mean": Rule(_emit_reduce("mean")),
    "max": Rule(_emit_reduce("max"), _check_extreme),
    "min": Rule(_emit_reduce("min"), _check_extreme),
    "argmax": Rule(_emit_argmax, _check_argmax),
    "softmax": Rule(lambda L, node: _last_axis_apply(L, node, L.em.soft_max)),
    "log_softmax": Rule(lambda L, node: _last_axis_apply(L, node, lambda t: _log_softmax_rows(L, t))),
}
