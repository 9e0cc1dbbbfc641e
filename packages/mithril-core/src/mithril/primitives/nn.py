"""Convolution and pooling over NCHW inputs, with their gradient primitives.

Attributes are pairs ``(height, width)``: ``stride``, ``padding`` (symmetric
zero padding), ``dilation``; ``groups`` as in torch.nn.Conv2d.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ShapeMismatchError
from ..shapes.kinds import bind_kind, unify_kinds
from ..shapes.rules import with_rank
from ..shapes.symbolic import Dim, SymShape, _raw, bind_dim, unify, unify_dims
from .base import REQUIRED, ShapeRule, Term, pairs_normalizer, primitive
from .default_rules import DEFAULT_RULES

if TYPE_CHECKING:  # pragma: no cover
    from ..ir.graph import GraphBuilder, Node, Value


def conv_out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    """Output length of a convolution / pooling window (floor mode)."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _spatial(
    out_dims: Sequence[Dim], in_dims: Sequence[Dim], kernel: Sequence[int | None], attrs: Mapping[str, Any], where: str
) -> bool:
    done = True
    for i in range(2):
        n, k = in_dims[i].known, kernel[i]
        if n is None or k is None:
            done = False
            continue
        o = conv_out_size(n, k, attrs["stride"][i], attrs["padding"][i], attrs["dilation"][i])
        if o <= 0:
            raise ShapeMismatchError(
                f"{where}: input spatial size {n} is too small for kernel {k} "
                f"(padding {attrs['padding'][i]}, dilation {attrs['dilation'][i]})"
            )
        bind_dim(out_dims[i], o)
    return done


def _conv_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    bind_kind(ins[0].kind, "float")
    for t in ins[1:]:
        unify_kinds(ins[0].kind, t.kind)
    unify_kinds(ins[0].kind, out.kind)
    n, c, h, w = with_rank(ins[0].shape, 4)
    o, ci, kh, kw = with_rank(ins[1].shape, 4)
    n2, o2, ho, wo = with_rank(out.shape, 4)
    unify_dims(n, n2)
    unify_dims(o, o2)
    g = attrs["groups"]
    done = True
    if c.known is not None and ci.known is None:
        if c.known % g:
            raise ShapeMismatchError(f"conv2d: {c.known} input channels not divisible by groups={g}")
        bind_dim(ci, c.known // g)
    elif ci.known is not None and c.known is None:
        bind_dim(c, ci.known * g)
    elif ci.known is not None and c.known is not None:
        if ci.known * g != c.known:
            raise ShapeMismatchError(f"conv2d: input has {c.known} channels, weight expects {ci.known} x groups {g}")
    else:
        done = False
    if o.known is not None and o.known % g:
        raise ShapeMismatchError(f"conv2d: {o.known} output channels not divisible by groups={g}")
    return _spatial([ho, wo], [h, w], [kh.known, kw.known], attrs, "conv2d") and done


_CONV = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}


def _vjp_conv(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    x, w = node.inputs
    gx = b.emit("conv2d_input_grad", g, w, input_shape=x.known_shape, **node.attrs) if b.needs_grad(x) else None
    gw = b.emit("conv2d_weight_grad", x, g, weight_shape=w.known_shape, **node.attrs) if b.needs_grad(w) else None
    return [gx, gw]


def _like_input_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    unify(ins[0].shape, out.shape)
    unify_kinds(ins[0].kind, out.kind)
    return True


def _given_shape_rule(attr: str) -> ShapeRule:
    def rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
        for t in ins:
            unify_kinds(t.kind, out.kind)
        unify(out.shape, SymShape.of(list(attrs[attr])))
        return True

    return rule


primitive(
    "conv2d",
    ("input", "weight"),
    _conv_rule,
    normalize=pairs_normalizer("stride", "padding", "dilation"),
    attrs=dict(_CONV),
    vjp=_vjp_conv,
    doc="cross-correlation, NCHW input, OIHW weight (as torch.nn.functional.conv2d, no bias)",
)
primitive(
    "conv2d_input_grad",
    ("grad", "weight"),
    _given_shape_rule("input_shape"),
    attrs={"input_shape": REQUIRED, **_CONV},
    expand=DEFAULT_RULES["conv2d_input_grad"],
    doc="gradient of conv2d wrt its input",
)
primitive(
    "conv2d_weight_grad",
    ("input", "grad"),
    _given_shape_rule("weight_shape"),
    attrs={"weight_shape": REQUIRED, **_CONV},
    expand=DEFAULT_RULES["conv2d_weight_grad"],
    doc="gradient of conv2d wrt its weight",
)


def _pool_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    bind_kind(ins[0].kind, "float")
    unify_kinds(ins[0].kind, out.kind)
    n, c, h, w = with_rank(ins[0].shape, 4)
    n2, c2, ho, wo = with_rank(out.shape, 4)
    unify_dims(n, n2)
    unify_dims(c, c2)
    k = attrs["kernel_size"]
    for i in range(2):
        if attrs["padding"][i] * 2 > k[i]:
            raise ShapeMismatchError(f"pool2d: padding {attrs['padding']} exceeds half the kernel {k}")
    return _spatial([ho, wo], [h, w], list(k), {**attrs, "dilation": attrs.get("dilation", (1, 1))}, "pool2d")


_MAXPOOL = {"kernel_size": REQUIRED, "stride": None, "padding": (0, 0), "dilation": (1, 1)}
_AVGPOOL = {"kernel_size": REQUIRED, "stride": None, "padding": (0, 0), "count_include_pad": True}


def _pool_normalizer(*names: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    pairs = pairs_normalizer(*names)

    def norm(attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = pairs(attrs)
        if attrs.get("stride") is None:  # torch: stride defaults to the kernel size
            attrs["stride"] = attrs["kernel_size"]
        return attrs

    return norm


primitive(
    "max_pool2d",
    ("input",),
    _pool_rule,
    normalize=_pool_normalizer("kernel_size", "stride", "padding", "dilation"),
    attrs=dict(_MAXPOOL),
    vjp=lambda b, n, g: [b.emit("max_pool2d_grad", n.inputs[0], g, **n.attrs)],
    doc="max over windows, -inf padding (as torch.nn.functional.max_pool2d)",
)
primitive(
    "max_pool2d_grad",
    ("input", "grad"),
    _like_input_rule,
    attrs=dict(_MAXPOOL),
    expand=DEFAULT_RULES["max_pool2d_grad"],
    doc="gradient of max_pool2d: grad routed to the (first) max of each window",
)
primitive(
    "avg_pool2d",
    ("input",),
    _pool_rule,
    normalize=_pool_normalizer("kernel_size", "stride", "padding"),
    attrs=dict(_AVGPOOL),
    vjp=lambda b, n, g: [b.emit("avg_pool2d_grad", g, input_shape=n.inputs[0].shape, **n.attrs)],
    doc="mean over windows (as torch.nn.functional.avg_pool2d)",
)
primitive(
    "avg_pool2d_grad",
    ("grad",),
    _given_shape_rule("input_shape"),
    attrs={"input_shape": REQUIRED, **_AVGPOOL},
    expand=DEFAULT_RULES["avg_pool2d_grad"],
    doc="gradient of avg_pool2d",
)

__all__ = ["Dim", "_raw", "conv_out_size"]
