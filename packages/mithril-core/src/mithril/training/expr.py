"""Arithmetic on graph values, so update rules read like their formulas.

``X`` wraps a :class:`~mithril.ir.graph.Value` and a
:class:`~mithril.ir.graph.GraphBuilder`; its operators emit core primitives
(``m = b1 * m + (1 - b1) * g`` emits ``mul``, ``sub``, ``add`` nodes). Python
numbers become float constants. Optimizers and schedules are written with it,
so every backend runs them with the kernels it already has.
"""

from __future__ import annotations

from typing import Any, Union

from ..ir.graph import GraphBuilder, Value

Operand = Union["X", float, int]


class X:
    """A graph value with operators that emit primitives."""

    __slots__ = ("b", "v")

    def __init__(self, b: GraphBuilder, v: Value) -> None:
        self.b = b
        self.v = v

    # ------------------------------------------------------------ helpers
    def _lift(self, other: Operand) -> Value:
        if isinstance(other, X):
            return other.v
        return self.b.const(float(other), "float")

    def emit(self, primitive: str, *others: Operand, **attrs: Any) -> X:
        """``primitive(self, *others, **attrs)`` as a new value."""
        return X(self.b, self.b.emit(primitive, self.v, *(self._lift(o) for o in others), **attrs))

    def _rev(self, primitive: str, other: Operand) -> X:
        return X(self.b, self.b.emit(primitive, self._lift(other), self.v))

    @property
    def shape(self) -> tuple[int, ...]:
        assert self.v.shape is not None
        return self.v.shape

    # ---------------------------------------------------------- operators
    def __add__(self, o: Operand) -> X:
        return self.emit("add", o)

    def __radd__(self, o: Operand) -> X:
        return self._rev("add", o)

    def __sub__(self, o: Operand) -> X:
        return self.emit("sub", o)

    def __rsub__(self, o: Operand) -> X:
        return self._rev("sub", o)

    def __mul__(self, o: Operand) -> X:
        return self.emit("mul", o)

    def __rmul__(self, o: Operand) -> X:
        return self._rev("mul", o)

    def __truediv__(self, o: Operand) -> X:
        return self.emit("div", o)

    def __rtruediv__(self, o: Operand) -> X:
        return self._rev("div", o)

    def __pow__(self, o: Operand) -> X:
        return self.emit("pow", o)

    def __rpow__(self, o: Operand) -> X:
        return self._rev("pow", o)

    def __neg__(self) -> X:
        return self.emit("neg")

    # ---------------------------------------------------------- functions
    def sqrt(self) -> X:
        return self.emit("sqrt")

    def sign(self) -> X:
        return self.emit("sign")

    def cos(self) -> X:
        return self.emit("cos")

    def square(self) -> X:
        return self * self

    def maximum(self, o: Operand) -> X:
        return self.emit("maximum", o)

    def minimum(self, o: Operand) -> X:
        return self.emit("minimum", o)

    def clip(self, low: Operand, high: Operand) -> X:
        return self.maximum(low).minimum(high)

    def less(self, o: Operand) -> X:
        return self.emit("less", o)

    def floor(self) -> X:
        """floor of a non-negative value (a cast to int truncates toward zero)."""
        return X(self.b, self.b.emit("cast", self.b.emit("cast", self.v, kind="int"), kind="float"))

    def sum(self) -> X:
        return self.emit("sum", axis=None, keepdims=False)

    def mean(self) -> X:
        return self.emit("mean", axis=None, keepdims=False)


def where(cond: X, a: Operand, b: Operand) -> X:
    """``cond ? a : b`` element-wise."""
    return X(cond.b, cond.b.emit("where", cond.v, cond._lift(a), cond._lift(b)))


__all__ = ["X", "where"]
