"""Comparisons, ``where``, causal masks and casts: a boolean is a float32 tensor of 0s and 1s.

Every composition is exact, NaN and inf included: ``a > b`` is ``step(a - b)`` (``inf - inf``
is NaN and ``step(NaN)`` is 0, as ``inf > inf`` is False), "not NaN" is ``step(|t| + 1)``, and
``where`` picks each element with ``ggml_get_rows`` (never ``c*a + (1-c)*b``, which turns an
inf or NaN of the branch not taken into NaN).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .base import Emit, Lowerer, Mode, Rule, scalar_of
from .elementwise import broadcast_binary, constant

if TYPE_CHECKING:  # pragma: no cover
    from mithril.ir.graph import Node

    from ..emitter import T

COMPARISONS = ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal")


# ------------------------------------------------------------------ masks
def not_nan(L: Lowerer, t: T) -> T:
    """1 where ``t`` is not NaN (inf included), else 0."""
    return L.em.unary("step", L.em.scale(L.em.unary("abs", t), 1.0, 1.0))


def greater(L: Lowerer, a: T, b: T, shape: tuple[int, ...]) -> T:
    """``a > b`` as 0/1 (``b`` may be a scalar float)."""
    return L.em.unary("step", _diff(L, a, b, shape))


def _diff(L: Lowerer, a: T | float, b: T | float, shape: tuple[int, ...]) -> T:
    if isinstance(b, float):
        assert not isinstance(a, float)
        return L.em.repeat(L.em.scale(a, 1.0, -b), shape)
    if isinstance(a, float):
        return L.em.repeat(L.em.scale(b, -1.0, a), shape)
    return broadcast_binary(L, "sub", a, b, shape)


def compare(L: Lowerer, op: str, a: T | float, b: T | float, shape: tuple[int, ...]) -> T:
    """``a op b`` as 0/1 of ``shape`` for ``op`` in :data:`COMPARISONS`."""
    em = L.em
    if op == "less":
        return em.unary("step", _diff(L, b, a, shape))
    if op == "greater":
        return em.unary("step", _diff(L, a, b, shape))
    # the others are false when either side is NaN
    both = _both_not_nan(L, a, b, shape)
    if op == "greater_equal":
        return em.binary("sub", both, compare(L, "less", a, b, shape), shape)
    if op == "less_equal":
        return em.binary("sub", both, compare(L, "greater", a, b, shape), shape)
    eq = em.binary(
        "sub", em.binary("sub", both, compare(L, "greater", a, b, shape), shape), compare(L, "less", a, b, shape), shape
    )
    return eq if op == "equal" else em.scale(eq, -1.0, 1.0)


def _both_not_nan(L: Lowerer, a: T | float, b: T | float, shape: tuple[int, ...]) -> T:
    masks = [not_nan(L, t) for t in (a, b) if not isinstance(t, float)]
    if any(isinstance(t, float) and math.isnan(t) for t in (a, b)):
        return constant(L, 0.0, shape)
    out = L.em.repeat(masks[0], shape)
    for m in masks[1:]:
        out = broadcast_binary(L, "mul", out, m, shape)
    return out


def both(L: Lowerer, a: T, b: T) -> T:
    """Logical and of two 0/1 masks of one shape."""
    return L.em.binary("mul", a, b, a.shape)


def either(L: Lowerer, a: T, b: T) -> T:
    """Logical or of two 0/1 masks of one shape: ``a + b - a*b``."""
    em = L.em
    return em.binary("sub", em.binary("add", a, b, a.shape), em.binary("mul", a, b, a.shape), a.shape)


def select(L: Lowerer, cond: T, yes: T, no: T, shape: tuple[int, ...]) -> T:
    """``where(cond, yes, no)`` element by element, exactly: a (n, 2, 1) stack of the candidates,
    and ``ggml_get_rows`` with the index ``1 - cond`` in each of the n batches."""
    em = L.em
    n = math.prod(shape)
    cond, yes, no = (em.repeat(t, shape) for t in (cond, yes, no))
    cand = em.concat(em.reshape(yes, (n, 1, 1)), em.reshape(no, (n, 1, 1)), 1, (n, 2, 1))
    idx = em.reshape(em.to_i32(em.scale(cond, -1.0, 1.0)), (n, 1))
    return em.reshape(em.get_rows(cand, idx), shape)


# ------------------------------------------------------------------ rules
def _operand(L: Lowerer, node: Node, i: int) -> T | float:
    c = scalar_of(node.inputs[i])
    return c if c is not None and not node.inputs[i].shape else L.arg(node, i)


def _emit_compare(op: str) -> Emit:
    def emit(L: Lowerer, node: Node) -> T:
        a, b = _operand(L, node, 0), _operand(L, node, 1)
        shape = node.output.known_shape
        if isinstance(a, float) and isinstance(b, float):
            return constant(L, float(getattr(np, op)(a, b)), shape)
        return compare(L, op, a, b, shape)

    return emit


def _emit_where(L: Lowerer, node: Node) -> T:
    return select(L, L.arg(node, 0), L.arg(node, 1), L.arg(node, 2), node.output.known_shape)


def _emit_tril_mask(L: Lowerer, node: Node) -> T:
    shape = node.output.known_shape
    t = L.em.new(shape)
    L.em.write(t, np.tril(np.ones(shape, dtype=np.float32), int(node.attrs["diagonal"])))
    return t


def _check_cast(node: Node, mode: Mode) -> str | None:
    src, dst = node.inputs[0].kind, node.attrs["kind"]
    if src not in ("float", "bool") or dst not in ("float", "bool"):
        return f"cast of kind {src!r} to {dst!r}: the ggml lowering handles float and bool data only"
    return None


def _emit_cast(L: Lowerer, node: Node) -> T:
    t = L.arg(node, 0)
    if node.inputs[0].kind == "float" and node.attrs["kind"] == "bool":
        # nonzero (NaN included) -> 1: 1 - (not NaN) + (t > 0) + (t < 0)
        em = L.em
        pos, neg = em.unary("step", t), em.unary("step", em.unary("neg", t))
        return em.binary("add", em.binary("add", em.scale(not_nan(L, t), -1.0, 1.0), pos, t.shape), neg, t.shape)
    return t  # float -> float, bool -> float (0/1), bool -> bool


RULES: dict[str, Rule] = {
    **{op: Rule(_emit_compare(op)) for op in COMPARISONS},
    "where": Rule(_emit_where),
    "tril_mask": Rule(_emit_tril_mask),
    "cast": Rule(_emit_cast, _check_cast),
}

#: primitives whose bool result the lowering computes right as 0/1 (the others would not:
#: ``add`` of two bools is a logical or in NumPy, 2 in float)
BOOL_RESULTS = frozenset(
    {
        *COMPARISONS,
        "where",
        "tril_mask",
        "cast",
        "identity",
        "reshape",
        "flatten",
        "unflatten",
        "reshape_as",
        "transpose",
        "broadcast_to",
        "concat",
        "slice",
        "maximum",
        "minimum",
        "max",
        "min",
    }
)
