"""Reductions over axes, and softmax / log_softmax."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..shapes.kinds import bind_kind, unify_kinds
from ..shapes.rules import normalize_axis
from ..shapes.symbolic import Dim, _raw, unify
from .base import ShapeRule, Term, axes_normalizer, primitive
from .grad_utils import expand_reduced, reduced_count

if TYPE_CHECKING:  # pragma: no cover
    from ..ir.graph import GraphBuilder, Node, Value


def _reduce_rule(out_kind: str | None = None) -> ShapeRule:
    def rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
        if out_kind is None:
            unify_kinds(ins[0].kind, out.kind)
        else:
            bind_kind(out.kind, out_kind)
        axis, keepdims = attrs["axis"], attrs["keepdims"]
        dims = ins[0].shape.dims()
        if dims is None:
            return False
        rank = len(dims)
        axes = set(range(rank)) if axis is None else {normalize_axis(a, rank, "reduction: ") for a in axis}
        if keepdims:
            new = [Dim(1) if i in axes else d for i, d in enumerate(dims)]
        else:
            new = [d for i, d in enumerate(dims) if i not in axes]
        unify(out.shape, _raw(new, None, []))
        return True

    return rule


def _vjp_sum(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    x = node.inputs[0]
    return [expand_reduced(b, g, x.known_shape, node.attrs["axis"], node.attrs["keepdims"])]


def _vjp_mean(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    x = node.inputs[0]
    n = reduced_count(x.known_shape, node.attrs["axis"])
    g = b.emit("div", g, b.const(float(n)))
    return [expand_reduced(b, g, x.known_shape, node.attrs["axis"], node.attrs["keepdims"])]


def _vjp_extreme(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    # the gradient is shared evenly between tied extremes (as torch.amax)
    x, y = node.inputs[0], node.output
    axis, keepdims = node.attrs["axis"], node.attrs["keepdims"]
    y_full = expand_reduced(b, y, x.known_shape, axis, keepdims)
    mask = b.emit("cast", b.emit("equal", x, y_full), kind="float")
    count = b.emit("sum", mask, axis=axis if axis is not None else tuple(range(len(x.known_shape))), keepdims=True)
    g_full = expand_reduced(b, g, x.known_shape, axis, keepdims)
    return [b.emit("div", b.emit("mul", g_full, mask), count)]


_AXIS = {"axis": None, "keepdims": False}
for _name, _vjp, _doc in (
    ("sum", _vjp_sum, "sum over axis (tuple or None)"),
    ("mean", _vjp_mean, "mean over axis"),
    ("max", _vjp_extreme, "max over axis"),
    ("min", _vjp_extreme, "min over axis"),
):
    primitive(
        _name,
        ("input",),
        normalize=axes_normalizer("axis"),
        rule=_reduce_rule(),
        attrs=dict(_AXIS),
        vjp=_vjp,
        doc=_doc,
    )
primitive(
    "argmax",
    ("input",),
    normalize=axes_normalizer("axis"),
    rule=_reduce_rule("int"),
    attrs={"axis": (-1,), "keepdims": False},
    doc="index of the max over one axis (a 1-tuple)",
)


def _softmax_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any], what: str = "softmax") -> bool:
    bind_kind(ins[0].kind, "float")
    unify_kinds(ins[0].kind, out.kind)
    unify(ins[0].shape, out.shape)
    dims = ins[0].shape.dims()
    if dims is None:
        return False  # the axis is checked once the rank is known
    normalize_axis(attrs["axis"], len(dims), f"{what}: ")
    return True


def _vjp_softmax(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    return [b.emit("softmax_grad", node.output, g, axis=node.attrs["axis"])]  # a fused composite


def _expand_softmax_grad(b: GraphBuilder, node: Node) -> Value:
    (y, g), ax = node.inputs, node.attrs["axis"]
    s = b.emit("sum", b.emit("mul", g, y), axis=(ax,), keepdims=True)
    return b.emit("mul", y, b.emit("sub", g, s))


def _softmax_grad_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    for t in ins:
        bind_kind(t.kind, "float")
        unify(ins[0].shape, t.shape)
    return _softmax_rule(ins[:1], out, attrs, "softmax_grad")


def _vjp_log_softmax(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    y, ax = node.output, node.attrs["axis"]
    s = b.emit("sum", g, axis=(ax,), keepdims=True)
    return [b.emit("sub", g, b.emit("mul", b.emit("exp", y), s))]


primitive(
    "softmax",
    ("input",),
    _softmax_rule,
    attrs={"axis": -1},
    vjp=_vjp_softmax,
    doc="numerically stable softmax over one axis",
)
primitive(
    "log_softmax",
    ("input",),
    lambda i, o, a: _softmax_rule(i, o, a, "log_softmax"),
    attrs={"axis": -1},
    vjp=_vjp_log_softmax,
    doc="numerically stable log-softmax over one axis",
)
primitive(
    "softmax_grad",
    ("activation", "grad"),
    _softmax_grad_rule,
    attrs={"axis": -1},
    expand=_expand_softmax_grad,
    doc="gradient of softmax from its output (activation): activation * (grad - sum(grad * activation, axis)); "
    "one kernel where the backend has it (torch: _softmax_backward_data)",
)
