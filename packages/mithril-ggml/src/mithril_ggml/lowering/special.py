"""``erf`` and ``pow``, which ggml lacks, from ggml ops, to float32 accuracy.

``erf`` is the NumPy backend's float32 scheme (mithril_numpy/special.py, tables fitted by
tools/fit_erf.py): for |x| < 1 ``x * P(2x^2 - 1)``, else ``1 - exp(-x^2) R(1/x) / x`` with |x|
clipped at 6; the branches are blended by an exact 0/1 mask (both are finite for every x).

``pow(x, y)`` with a tensor exponent follows C's ``powf`` (NumPy's), edge cases included:
``|x| ** y = exp(y * log|x|)``, negated for a negative base and an odd integer ``y``, NaN for a
finite negative base and a non-integer ``y``, and 1 for ``y == 0``, ``x == 1`` and
``x == -1, y == ±inf``. Its relative error is about ``|y log x|`` float32 ulps (1e-5 at most
before overflow).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .base import Lowerer, Rule, scalar_of
from .elementwise import constant
from .logic import compare, either, not_nan, select

if TYPE_CHECKING:  # pragma: no cover
    from mithril.ir.graph import Node

    from ..emitter import T

#: Chebyshev interpolants in float32 (mithril_numpy.special.ERF_SMALL_F32 / ERFC_LARGE_F32)
ERF_SMALL = (
    0.9654687770939903,
    -0.14053609137964274,
    0.01985180518381977,
    -0.0022854431428609664,
    0.0002193591913438419,
    -1.7650187079697012e-05,
)
ERFC_LARGE = (
    0.49666648512593864,
    -0.07128218450710024,
    -0.0019369404324158664,
    0.006210377046682908,
    -0.0026685644182676644,
    0.000675376600467986,
    -6.009654901907617e-06,
    -0.00014142268649276437,
    6.652542566336113e-05,
)


# -------------------------------------------------------------------- erf
def horner(L: Lowerer, coefficients: tuple[float, ...], s: T) -> T:
    """``sum(c[i] * s**i)``, innermost first, as NumPy's ``_horner``."""
    em = L.em
    out = em.scale(s, coefficients[-1], coefficients[-2])
    for c in coefficients[-3::-1]:
        out = em.scale(em.binary("mul", out, s, s.shape), 1.0, c)
    return out


def nan_of(L: Lowerer, t: T) -> T:
    """NaN where ``t`` is NaN, else 0 (``sqrt(-1)``): adding it carries a NaN through a mask."""
    return L.em.unary("sqrt", L.em.scale(not_nan(L, t), 1.0, -1.0))


def erf(L: Lowerer, x: T) -> T:
    em, shape = L.em, x.shape
    a = em.unary("abs", x)
    xc = em.clamp(x, -1.0, 1.0)
    small = em.binary("mul", xc, horner(L, ERF_SMALL, em.scale(em.unary("sqr", xc), 2.0, -1.0)), shape)
    cl = em.clamp(a, 1.0, 6.0)
    u = em.binary("div", constant(L, 1.0, shape), cl, shape)
    tail = em.binary("mul", horner(L, ERFC_LARGE, em.scale(u, 2.4, -1.4)), u, shape)
    tail = em.binary("mul", tail, em.unary("exp", em.unary("neg", em.unary("sqr", cl))), shape)
    large = em.binary("mul", em.scale(tail, -1.0, 1.0), em.unary("sign", x), shape)
    m = em.unary("step", em.scale(a, -1.0, 1.0))  # |x| < 1
    out = em.binary(
        "add", em.binary("mul", small, m, shape), em.binary("mul", large, em.scale(m, -1.0, 1.0), shape), shape
    )
    return em.binary("add", out, nan_of(L, x), shape)


# -------------------------------------------------------------------- pow
def general_pow(L: Lowerer, x: T, y: T, shape: tuple[int, ...]) -> T:
    """``x ** y`` for any float ``x`` and ``y`` (as C's powf)."""
    em = L.em
    x, y = em.repeat(x, shape), em.repeat(y, shape)
    r = em.unary("exp", em.binary("mul", y, em.unary("log", em.unary("abs", x)), shape))
    # a negative base, -0.0 and -inf included: x + 1/x < 0
    neg = em.unary(
        "step", em.unary("neg", em.binary("add", x, em.binary("div", constant(L, 1.0, shape), x, shape), shape))
    )
    # y - floor(y) > 0: not an integer (inf - floor(inf) is NaN: inf counts as an even integer)
    non_integer = em.unary("step", em.binary("sub", y, em.unary("floor", y), shape))
    half = em.scale(y, 0.5)
    odd = em.unary("step", em.binary("sub", half, em.unary("floor", half), shape))  # 0.5 for an odd integer
    odd = em.binary("mul", odd, em.scale(non_integer, -1.0, 1.0), shape)
    r = em.binary("mul", r, em.scale(em.binary("mul", neg, odd, shape), -2.0, 1.0), shape)
    # NaN: a finite negative base (not -0.0) and a non-integer exponent
    finite_neg = em.binary(
        "mul", compare(L, "less", x, 0.0, shape), compare(L, "less", em.unary("abs", x), math.inf, shape), shape
    )
    r = select(L, em.binary("mul", finite_neg, non_integer, shape), constant(L, math.nan, shape), r, shape)
    one = either(L, compare(L, "equal", y, 0.0, shape), compare(L, "equal", x, 1.0, shape))
    minus_one_inf = em.binary(
        "mul", compare(L, "equal", x, -1.0, shape), compare(L, "equal", em.unary("abs", y), math.inf, shape), shape
    )
    return select(L, either(L, one, minus_one_inf), constant(L, 1.0, shape), r, shape)


_FAST_EXPONENTS = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0)


def _emit_pow(L: Lowerer, node: Node) -> T:
    base, expo = node.inputs
    out = node.output.known_shape
    em = L.em
    p, c = scalar_of(expo), scalar_of(base)
    if p is not None and p in _FAST_EXPONENTS:
        return _fast_pow(L, em.repeat(L.arg(node, 0), out), p)
    if c is not None and c > 0 and c != 1.0 and math.isfinite(c):
        # c ** y = exp(y log c), exact semantics for a positive finite base other than 1 (1 ** NaN is 1)
        return em.repeat(em.unary("exp", em.scale(L.arg(node, 1), math.log(c))), out)
    return general_pow(L, L.arg(node, 0), L.arg(node, 1), out)


def _fast_pow(L: Lowerer, x: T, p: float) -> T:
    em, shape = L.em, x.shape
    if p == 0.0:
        return constant(L, 1.0, shape)
    if p == 1.0:
        return x
    if abs(p) == 0.5:
        r = em.unary("sqrt", x)
    elif abs(p) == 1.0:
        r = x
    elif abs(p) == 2.0:
        r = em.unary("sqr", x)
    else:  # 3
        r = em.binary("mul", em.unary("sqr", x), x, shape)
    if p < 0:
        r = em.binary("div", constant(L, 1.0, shape), r, shape)
    return r


RULES: dict[str, Rule] = {
    "pow": Rule(_emit_pow),
    "erf": Rule(lambda L, node: erf(L, L.arg(node, 0))),
}
