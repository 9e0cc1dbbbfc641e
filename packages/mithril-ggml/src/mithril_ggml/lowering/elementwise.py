"""Element-wise primitives: arithmetic with NumPy broadcasting, activations (pow and erf: special.py)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ..layout import ne_of
from .base import Emit, Lowerer, Mode, Rule, scalar_of

if TYPE_CHECKING:  # pragma: no cover
    from mithril.ir.graph import Node

    from ..emitter import T


# ------------------------------------------------------------- broadcasting
def broadcast_binary(L: Lowerer, op: str, a: T, b: T, shape: tuple[int, ...]) -> T:
    """``a op b`` with NumPy broadcasting on top of ggml's "repeat src1 over src0" rule."""
    em, full = L.em, ne_of(shape)
    if a.ne != full:
        if op in ("add", "mul") and b.ne == full:
            a, b = b, a
        else:
            a = em.repeat(a, shape)
    if L.mode.grad and op in ("sub", "div") and b.ne != full:
        # ggml's backward of SUB/DIV assumes an unbroadcast right operand
        b = em.repeat(b, shape)
    return em.binary(op, a, b, shape)


def constant(L: Lowerer, value: float, shape: tuple[int, ...]) -> T:
    t = L.em.new(shape)
    L.em.write(t, np.full(shape, value, dtype=np.float32))
    return t


def _covers(v_shape: tuple[int, ...], out: tuple[int, ...]) -> bool:
    return ne_of(v_shape) == ne_of(out)


def _emit_arith(op: str) -> Emit:
    def emit(L: Lowerer, node: Node) -> T:
        x, y = node.inputs
        out = node.output.known_shape
        em = L.em
        cy, cx = scalar_of(y), scalar_of(x)
        if cy is not None and _covers(x.known_shape, out) and not (op == "div" and cy == 0.0):
            a = L.arg(node, 0)
            if op == "add":
                return em.scale(a, 1.0, cy)
            if op == "sub":
                return em.scale(a, 1.0, -cy)
            if op == "mul":
                return em.scale(a, cy)
            return em.scale(a, 1.0 / cy)
        if cx is not None and _covers(y.known_shape, out) and op != "div":
            b = L.arg(node, 1)
            if op == "add":
                return em.scale(b, 1.0, cx)
            if op == "mul":
                return em.scale(b, cx)
            return em.scale(b, -1.0, cx)
        return broadcast_binary(L, op, L.arg(node, 0), L.arg(node, 1), out)

    return emit


# ------------------------------------------------------- maximum / minimum
def _emit_extreme(largest: bool) -> Emit:
    def emit(L: Lowerer, node: Node) -> T:
        x, y = node.inputs
        out = node.output.known_shape
        em = L.em
        zero_side = (
            1
            if scalar_of(y) == 0.0 and _covers(x.known_shape, out)
            else 0
            if scalar_of(x) == 0.0 and _covers(y.known_shape, out)
            else None
        )
        if zero_side is not None:
            t = L.arg(node, 1 - zero_side)
            if largest:
                return em.unary("relu", t)
            return em.unary("neg", em.unary("relu", em.unary("neg", t)))
        a, b = L.arg(node, 0), L.arg(node, 1)
        # m = 1 where a > b: an exact select (multiplying by 0/1), not b + relu(a - b)
        m = em.unary("step", broadcast_binary(L, "sub", a, b, out))
        not_m = em.scale(m, -1.0, 1.0)
        hi, lo = (a, b) if largest else (b, a)
        return em.binary("add", broadcast_binary(L, "mul", m, hi, out), broadcast_binary(L, "mul", not_m, lo, out), out)

    return emit


# ------------------------------------------------------------- activations
def sigmoid(L: Lowerer, t: T) -> T:
    em = L.em
    if not L.mode.grad:
        return em.unary("sigmoid", t)
    # ggml cannot differentiate its SIGMOID; 1 / (1 + exp(-x)) it can
    d = em.scale(em.unary("exp", em.unary("neg", t)), 1.0, 1.0)
    return em.binary("div", constant(L, 1.0, t.shape), d, t.shape)


def tanh(L: Lowerer, t: T) -> T:
    if not L.mode.grad:
        return L.em.unary("tanh", t)
    return L.em.scale(sigmoid(L, L.em.scale(t, 2.0)), 2.0, -1.0)


def _emit_unary(name: str) -> Emit:
    def emit(L: Lowerer, node: Node) -> T:
        t = L.arg(node, 0)
        if name == "sigmoid":
            return sigmoid(L, t)
        if name == "tanh":
            return tanh(L, t)
        return L.em.unary(name, t)

    return emit


def _emit_leaky_relu(L: Lowerer, node: Node) -> T:
    t, slope = L.arg(node, 0), float(node.attrs["slope"])
    em = L.em
    if not L.mode.grad:
        return em.leaky_relu(t, slope)
    neg_part = em.scale(em.unary("relu", em.unary("neg", t)), -slope)
    return em.binary("add", em.unary("relu", t), neg_part, t.shape)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _check_gelu(node: Node, mode: Mode) -> str | None:
    if node.attrs["approximate"] not in ("none", "tanh"):
        return f"unknown gelu approximation {node.attrs['approximate']!r}"
    if mode.grad and node.attrs["approximate"] == "none":
        return "ggml cannot differentiate the erf-based gelu (use approximate='tanh' for gradients)"
    return None


def _emit_gelu(L: Lowerer, node: Node) -> T:
    t, em = L.arg(node, 0), L.em
    if node.attrs["approximate"] == "none":
        return em.unary("gelu_erf", t)
    # ggml_gelu uses an fp16 table (error ~2e-3): build the tanh formula from exact ops
    x3 = em.binary("mul", em.unary("sqr", t), t, t.shape)
    inner = em.binary("add", t, em.scale(x3, 0.044715), t.shape)
    th = tanh(L, em.scale(inner, _SQRT_2_OVER_PI))
    return em.binary("mul", em.scale(t, 0.5), em.scale(th, 1.0, 1.0), t.shape)


RULES: dict[str, Rule] = {
    **{op: Rule(_emit_arith(op)) for op in ("add", "sub", "mul", "div")},
    "maximum": Rule(_emit_extreme(True)),
    "minimum": Rule(_emit_extreme(False)),
    **{
        op: Rule(_emit_unary(op))
        for op in ("neg", "abs", "sign", "exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "relu")
    },
    "leaky_relu": Rule(_emit_leaky_relu),
    "gelu": Rule(_emit_gelu, _check_gelu),
    "identity": Rule(lambda L, node: L.arg(node, 0)),
}
