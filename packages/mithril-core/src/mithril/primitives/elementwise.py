"""Element-wise primitives with NumPy broadcasting."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..shapes.kinds import bind_kind, unify_kinds
from ..shapes.rules import broadcast
from ..shapes.symbolic import unify
from .base import GradRule, Primitive, Term, primitive, same_node
from .grad_utils import unbroadcast

if TYPE_CHECKING:
    from ..ir.graph import GraphBuilder, Node, Value

#: a unary gradient: (builder, input, output, cotangent, attrs) -> the input's cotangent
UnaryGrad = Callable[["GraphBuilder", "Value", "Value", "Value", Mapping[str, Any]], "Value"]


# ------------------------------------------------------------------ rules
def _same_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    unify(ins[0].shape, out.shape)
    unify_kinds(ins[0].kind, out.kind)
    return True


def _float_unary_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    bind_kind(ins[0].kind, "float")
    return _same_rule(ins, out, attrs)


def _arith_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    for t in ins[1:]:
        unify_kinds(ins[0].kind, t.kind)
    unify_kinds(ins[0].kind, out.kind)
    return broadcast([t.shape for t in ins], out.shape)


def _float_arith_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    bind_kind(ins[0].kind, "float")
    return _arith_rule(ins, out, attrs)


def _compare_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    unify_kinds(ins[0].kind, ins[1].kind)
    bind_kind(out.kind, "bool")
    return broadcast([t.shape for t in ins], out.shape)


def _where_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    bind_kind(ins[0].kind, "bool")
    unify_kinds(ins[1].kind, ins[2].kind)
    unify_kinds(ins[1].kind, out.kind)
    return broadcast([t.shape for t in ins], out.shape)


def _cast_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    unify(ins[0].shape, out.shape)
    bind_kind(out.kind, attrs["kind"])
    return True


# ------------------------------------------------------------- gradients
def _vjp_add(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    x, y = node.inputs
    return [unbroadcast(b, g, x.known_shape), unbroadcast(b, g, y.known_shape)]


def _vjp_sub(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    x, y = node.inputs
    return [unbroadcast(b, g, x.known_shape), unbroadcast(b, b.emit("neg", g), y.known_shape)]


def _vjp_mul(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    x, y = node.inputs
    return [
        unbroadcast(b, b.emit("mul", g, y), x.known_shape),
        unbroadcast(b, b.emit("mul", g, x), y.known_shape),
    ]


def _vjp_div(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    x, y = node.inputs
    gx = b.emit("div", g, y)
    gy = b.emit("neg", b.emit("div", b.emit("mul", g, node.output), y))
    return [unbroadcast(b, gx, x.known_shape), unbroadcast(b, gy, y.known_shape)]


def _vjp_pow(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    x, y = node.inputs
    one = b.const(1.0)
    gx = b.emit("mul", g, b.emit("mul", y, b.emit("pow", x, b.emit("sub", y, one))))
    gy = None
    if b.needs_grad(y):
        gy = unbroadcast(b, b.emit("mul", g, b.emit("mul", node.output, b.emit("log", x))), y.known_shape)
    return [unbroadcast(b, gx, x.known_shape), gy]


def _vjp_select(cmp: str) -> GradRule:
    def vjp(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
        x, y = node.inputs
        mask = b.emit(cmp, x, y)
        zero = b.const(0.0)
        return [
            unbroadcast(b, b.emit("where", mask, g, zero), x.known_shape),
            unbroadcast(b, b.emit("where", mask, zero, g), y.known_shape),
        ]

    return vjp


def _vjp_where(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    c, x, y = node.inputs
    zero = b.const(0.0)
    return [
        None,
        unbroadcast(b, b.emit("where", c, g, zero), x.known_shape),
        unbroadcast(b, b.emit("where", c, zero, g), y.known_shape),
    ]


def _vjp_unary(fn: UnaryGrad) -> GradRule:
    def vjp(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
        return [fn(b, node.inputs[0], node.output, g, node.attrs)]

    return vjp


_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _gelu_grad(b: GraphBuilder, x: Value, y: Value, g: Value, attrs: Mapping[str, Any]) -> Value:
    if attrs["approximate"] == "tanh":
        # y = 0.5 x (1 + tanh(u)), u = c (x + 0.044715 x^3)
        c = b.const(_SQRT_2_OVER_PI)
        x2 = b.emit("mul", x, x)
        u = b.emit("mul", c, b.emit("add", x, b.emit("mul", b.const(0.044715), b.emit("mul", x2, x))))
        t = b.emit("tanh", u)
        du = b.emit("mul", c, b.emit("add", b.const(1.0), b.emit("mul", b.const(3 * 0.044715), x2)))
        sech2 = b.emit("sub", b.const(1.0), b.emit("mul", t, t))
        d = b.emit(
            "add",
            b.emit("mul", b.const(0.5), b.emit("add", b.const(1.0), t)),
            b.emit("mul", b.emit("mul", b.const(0.5), x), b.emit("mul", sech2, du)),
        )
        return b.emit("mul", g, d)
    cdf = b.emit("mul", b.const(0.5), b.emit("add", b.const(1.0), b.emit("erf", b.emit("div", x, b.const(_SQRT_2)))))
    pdf = b.emit("mul", b.const(_INV_SQRT_2PI), b.emit("exp", b.emit("mul", b.const(-0.5), b.emit("mul", x, x))))
    return b.emit("mul", g, b.emit("add", cdf, b.emit("mul", x, pdf)))


_UNARY_GRADS: dict[str, UnaryGrad] = {
    "neg": lambda b, x, y, g, a: b.emit("neg", g),
    "abs": lambda b, x, y, g, a: b.emit("mul", g, b.emit("sign", x)),
    "exp": lambda b, x, y, g, a: b.emit("mul", g, y),
    "log": lambda b, x, y, g, a: b.emit("div", g, x),
    "sqrt": lambda b, x, y, g, a: b.emit("div", g, b.emit("mul", b.const(2.0), y)),
    "sin": lambda b, x, y, g, a: b.emit("mul", g, b.emit("cos", x)),
    "cos": lambda b, x, y, g, a: b.emit("neg", b.emit("mul", g, b.emit("sin", x))),
    "tanh": lambda b, x, y, g, a: b.emit("mul", g, b.emit("sub", b.const(1.0), b.emit("mul", y, y))),
    "sigmoid": lambda b, x, y, g, a: b.emit("mul", g, b.emit("mul", y, b.emit("sub", b.const(1.0), y))),
    "relu": lambda b, x, y, g, a: b.emit("relu_grad", y, g),  # a fused composite (primitives/normalization.py)
    "leaky_relu": lambda b, x, y, g, a: b.emit(
        "where", b.emit("greater", x, b.const(0.0)), g, b.emit("mul", g, b.const(a["slope"]))
    ),
    "erf": lambda b, x, y, g, a: b.emit(
        "mul", g, b.emit("mul", b.const(2.0 / math.sqrt(math.pi)), b.emit("exp", b.emit("neg", b.emit("mul", x, x))))
    ),
    "gelu": lambda b, x, y, g, a: b.emit("gelu_grad", x, g, approximate=a["approximate"]),  # a fused composite
}

# ------------------------------------------------------------ definitions
add = primitive("add", ("left", "right"), _arith_rule, vjp=_vjp_add, recompute=same_node, doc="left + right")
sub = primitive("sub", ("left", "right"), _arith_rule, vjp=_vjp_sub, recompute=same_node, doc="left - right")
mul = primitive("mul", ("left", "right"), _arith_rule, vjp=_vjp_mul, recompute=same_node, doc="left * right")
div = primitive(
    "div", ("left", "right"), _float_arith_rule, vjp=_vjp_div, recompute=same_node, doc="left / right (true division)"
)
pow_ = primitive(
    "pow", ("base", "exponent"), _float_arith_rule, vjp=_vjp_pow, recompute=same_node, doc="base ** exponent"
)
maximum = primitive(
    "maximum",
    ("left", "right"),
    _arith_rule,
    vjp=_vjp_select("greater_equal"),
    recompute=same_node,
    doc="element-wise max",
)
minimum = primitive(
    "minimum",
    ("left", "right"),
    _arith_rule,
    vjp=_vjp_select("less_equal"),
    recompute=same_node,
    doc="element-wise min",
)

for _name in ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal"):
    primitive(_name, ("left", "right"), _compare_rule, recompute=same_node, doc=f"element-wise {_name}, bool output")

where = primitive(
    "where",
    ("condition", "left", "right"),
    _where_rule,
    vjp=_vjp_where,
    nondiff=("condition",),
    recompute=same_node,
    doc="condition ? left : right",
)
cast = primitive(
    "cast",
    ("input",),
    _cast_rule,
    attrs={"kind": "float"},
    vjp=lambda b, n, g: [b.emit("cast", g, kind="float") if n.inputs[0].kind == "float" else None],
    recompute=same_node,
    doc="convert to the backend's dtype of kind 'float', 'int' or 'bool'",
)

_UNARY_DOCS = {
    "neg": "-x",
    "abs": "|x|",
    "exp": "e ** x",
    "log": "natural logarithm",
    "sqrt": "square root",
    "sin": "sine",
    "cos": "cosine",
    "tanh": "hyperbolic tangent",
    "sigmoid": "1 / (1 + exp(-x))",
    "relu": "max(x, 0)",
    "erf": "the error function",
}
for _name in ("neg", "abs"):
    primitive(
        _name, ("input",), _same_rule, vjp=_vjp_unary(_UNARY_GRADS[_name]), recompute=same_node, doc=_UNARY_DOCS[_name]
    )
primitive(
    "sign",
    ("input",),
    _same_rule,
    recompute=same_node,
    vjp=lambda b, n, g: [None],
    doc="-1, 0 or 1 (piecewise constant: its gradient is zero, as torch.sign's)",
)
for _name in ("exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "relu", "erf"):
    primitive(
        _name,
        ("input",),
        _float_unary_rule,
        vjp=_vjp_unary(_UNARY_GRADS[_name]),
        recompute=same_node,
        doc=_UNARY_DOCS[_name],
    )
primitive(
    "leaky_relu",
    ("input",),
    _float_unary_rule,
    attrs={"slope": 0.01},
    vjp=_vjp_unary(_UNARY_GRADS["leaky_relu"]),
    recompute=same_node,
    doc="x if x > 0 else slope * x",
)
primitive(
    "gelu",
    ("input",),
    _float_unary_rule,
    attrs={"approximate": "none"},
    vjp=_vjp_unary(_UNARY_GRADS["gelu"]),
    recompute=same_node,
    doc="x * Phi(x); approximate='tanh' uses the tanh formula (as torch.nn.GELU)",
)


def _same_float_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    for t in ins:
        bind_kind(t.kind, "float")
        unify(ins[0].shape, t.shape)
    unify_kinds(ins[0].kind, out.kind)
    unify(ins[0].shape, out.shape)
    return True


primitive(
    "gelu_grad",
    ("input", "grad"),
    _same_float_rule,
    attrs={"approximate": "none"},
    expand=lambda b, node: _gelu_grad(b, node.inputs[0], node.output, node.inputs[1], node.attrs),
    recompute=same_node,
    doc="gradient of gelu from its input: grad * gelu'(input); one kernel where the backend has it "
    "(torch: gelu_backward)",
)

UNARY_FLOAT = ("exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "relu", "erf", "leaky_relu", "gelu")
BINARY = ("add", "sub", "mul", "div", "pow", "maximum", "minimum")
COMPARE = ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal")
__all__ = ["BINARY", "COMPARE", "UNARY_FLOAT", "Primitive"]
