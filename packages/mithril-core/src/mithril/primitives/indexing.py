"""Indexing and shape primitives the model zoo needs.

* ``gather_rows(weight [V, D], indices [*I] int) -> [*I, D]``: embedding lookup
  (``weight[indices]``); its gradient is ``scatter_add_rows`` (torch's ``index_add``).
* ``gather_last(input [*B, C], indices [*B] int) -> [*B]``: ``input[..., indices]``
  per position (``torch.gather`` on the last axis); gradient ``scatter_last``.
* ``unflatten(input; axis, sizes)``: split one axis into ``sizes`` (one may be -1),
  as ``torch.unflatten``: the inverse of ``flatten`` without knowing the other dims.
* ``reshape_as(input, like)``: ``input`` reshaped to ``like``'s shape (``like`` only
  lends its shape; it gets no gradient).
* ``conv_transpose2d(input, weight; stride, padding, output_padding, dilation, groups)``:
  as ``torch.nn.functional.conv_transpose2d`` without bias; weight ``[in, out/groups, kh, kw]``.
  It is the transpose of ``conv2d``: its gradients are ``conv2d`` and ``conv2d_weight_grad``.
* ``positions(like; axis)``: int ``[n]`` = ``0, 1, ..., n - 1`` where ``n`` is the size of
  ``like``'s ``axis`` (negative: from the end), e.g. token positions of ``ids [B, T]`` with ``axis=-1``.
* ``tril_mask(like; diagonal)``: a bool ``[L, S]`` mask, True on and below the
  ``diagonal`` of the last two axes of ``like`` (causal attention).

This module also gives ``conv2d_input_grad`` its gradient rule (so the backward
pass of a backward pass, and ``conv_transpose2d`` written with it, differentiate).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ShapeMismatchError
from ..shapes.kinds import bind_kind, unify_kinds
from ..shapes.rules import at_least_rank, with_rank
from ..shapes.symbolic import Dim, SymShape, Variadic, _raw, bind_dim, unify, unify_dims
from .base import REQUIRED, Term, primitive, registry

if TYPE_CHECKING:  # pragma: no cover
    from ..ir.graph import GraphBuilder, Node, Value


def _tail(shape: SymShape, n: int) -> tuple[SymShape, list[Dim]] | None:
    """``(rest, last n dims)``, or None while undecidable: :func:`at_least_rank`."""
    return at_least_rank(shape, n)


# ---------------------------------------------------------------- gather_rows
def _gather_rows_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    weight, indices = ins
    bind_kind(indices.kind, "int")
    unify_kinds(weight.kind, out.kind)
    _, d = with_rank(weight.shape, 2)
    i = indices.shape.resolve()
    unify(out.shape, _raw(i.prefix, i.variadic, i.suffix + [d]))
    return True


def _vjp_gather_rows(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    weight, indices = node.inputs
    return [b.emit("scatter_add_rows", g, indices, num_rows=weight.known_shape[0]), None]


def _scatter_add_rows_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    grad, indices = ins
    bind_kind(indices.kind, "int")
    unify_kinds(grad.kind, out.kind)
    split = _tail(grad.shape, 1)
    if split is None:
        return False
    batch, (d,) = split
    unify(indices.shape, batch)
    unify(out.shape, _raw([Dim(attrs["num_rows"]), d], None, []))
    return True


primitive(
    "gather_rows",
    ("weight", "indices"),
    _gather_rows_rule,
    vjp=_vjp_gather_rows,
    nondiff=("indices",),
    doc="weight[indices]: rows of weight [V, D] picked by int indices [...] (embedding lookup)",
)
primitive(
    "scatter_add_rows",
    ("grad", "indices"),
    _scatter_add_rows_rule,
    attrs={"num_rows": REQUIRED},
    vjp=lambda b, n, g: [b.emit("gather_rows", g, n.inputs[1]), None],
    nondiff=("indices",),
    doc="zeros([num_rows, D]) with grad rows added at indices (index_add; the transpose of gather_rows)",
)


# ---------------------------------------------------------------- gather_last
def _gather_last_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    x, indices = ins
    bind_kind(indices.kind, "int")
    unify_kinds(x.kind, out.kind)
    split = _tail(x.shape, 1)
    if split is None:
        return False
    batch, _ = split
    unify(indices.shape, batch)
    unify(out.shape, batch)
    return True


def _scatter_last_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    grad, indices = ins
    bind_kind(indices.kind, "int")
    unify_kinds(grad.kind, out.kind)
    unify(indices.shape, grad.shape)
    r = grad.shape.resolve()
    unify(out.shape, _raw(r.prefix, r.variadic, r.suffix + [Dim(attrs["size"])]))
    return True


primitive(
    "gather_last",
    ("input", "indices"),
    _gather_last_rule,
    nondiff=("indices",),
    vjp=lambda b, n, g: [b.emit("scatter_last", g, n.inputs[1], size=n.inputs[0].shape[-1]), None],
    doc="input[..., indices]: one element of the last axis per position (NLL, cross-entropy)",
)
primitive(
    "scatter_last",
    ("grad", "indices"),
    _scatter_last_rule,
    attrs={"size": REQUIRED},
    nondiff=("indices",),
    vjp=lambda b, n, g: [b.emit("gather_last", g, n.inputs[1]), None],
    doc="zeros([..., size]) with grad written at indices of the last axis (the transpose of gather_last)",
)


# ------------------------------------------------------------ unflatten etc.
def _unflatten_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    unify_kinds(ins[0].kind, out.kind)
    axis, sizes = attrs["axis"], tuple(attrs["sizes"])
    if sum(1 for s in sizes if s == -1) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise ShapeMismatchError(f"unflatten: sizes {sizes} may hold one -1 and positive sizes only")
    r = ins[0].shape.resolve()
    new = [Dim(s) if s != -1 else Dim() for s in sizes]
    known = 1
    for s in sizes:
        if s != -1:
            known *= s

    def split(d: Dim) -> bool:
        n = d.known
        if n is None:
            return False
        if -1 in sizes:
            if n % known:
                raise ShapeMismatchError(f"unflatten: dimension {n} cannot be split into {sizes}")
            bind_dim(new[sizes.index(-1)], n // known)
        elif n != known:
            raise ShapeMismatchError(f"unflatten: dimension {n} cannot be split into {sizes}")
        return True

    if axis >= 0:
        if r.variadic is None and len(r.prefix) <= axis:
            raise ShapeMismatchError(f"unflatten: axis {axis} of a rank-{len(r.prefix)} input")
        if len(r.prefix) <= axis:
            if r.suffix:  # [..., m, n] (a matmul of operands of unknown rank): axis may be m, wait
                return False
            head = [Dim() for _ in range(axis + 1)]
            unify(ins[0].shape, _raw(head, Variadic(), []))
            r = ins[0].shape.resolve()
        d = r.prefix[axis]
        unify(out.shape, _raw(r.prefix[:axis] + new + r.prefix[axis + 1 :], r.variadic, r.suffix))
        return split(d)
    k = -axis
    split_ = _tail(ins[0].shape, k)
    if split_ is None:
        return False
    batch, tail = split_
    b = batch.resolve()
    unify(out.shape, _raw(b.prefix, b.variadic, b.suffix + new + tail[1:]))
    return split(tail[0])


primitive(
    "unflatten",
    ("input",),
    _unflatten_rule,
    attrs={"axis": REQUIRED, "sizes": REQUIRED},
    vjp=lambda b, n, g: [b.emit("reshape", g, shape=n.inputs[0].shape)],
    doc="split axis into sizes (one may be -1), as torch.unflatten",
)


def _reshape_as_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    x, like = ins
    unify_kinds(x.kind, out.kind)
    unify(out.shape, like.shape)
    a, c = x.shape.concrete(), like.shape.concrete()
    if a is None or c is None:
        return False
    na, nc = 1, 1
    for d in a:
        na *= d
    for d in c:
        nc *= d
    if na != nc:
        raise ShapeMismatchError(f"reshape_as: cannot reshape {list(a)} into {list(c)}")
    return True


primitive(
    "reshape_as",
    ("input", "like"),
    _reshape_as_rule,
    nondiff=("like",),
    vjp=lambda b, n, g: [b.emit("reshape", g, shape=n.inputs[0].shape), None],
    doc="input reshaped to like's shape (like lends only its shape)",
)


# -------------------------------------------------------- conv_transpose2d
def conv_transpose_out_size(n: int, k: int, s: int, p: int, op: int, d: int) -> int:
    """Output length of a transposed convolution (as torch.nn.ConvTranspose2d)."""
    return (n - 1) * s - 2 * p + d * (k - 1) + op + 1


_CONVT = {"stride": (1, 1), "padding": (0, 0), "output_padding": (0, 0), "dilation": (1, 1), "groups": 1}


def _conv_transpose_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    x, w = ins
    bind_kind(x.kind, "float")
    unify_kinds(x.kind, w.kind)
    unify_kinds(x.kind, out.kind)
    n, c, h, wd = with_rank(x.shape, 4)
    ci, co, kh, kw = with_rank(w.shape, 4)
    n2, o, ho, wo = with_rank(out.shape, 4)
    unify_dims(n, n2)
    unify_dims(c, ci)
    g = attrs["groups"]
    for i in range(2):
        if attrs["output_padding"][i] >= max(attrs["stride"][i], attrs["dilation"][i]):
            raise ShapeMismatchError(
                f"conv_transpose2d: output_padding {attrs['output_padding']} must be smaller than stride or dilation"
            )
    done = True
    if co.known is not None:
        bind_dim(o, co.known * g)
    else:
        done = False
    if c.known is not None and c.known % g:
        raise ShapeMismatchError(f"conv_transpose2d: {c.known} input channels not divisible by groups={g}")
    for i, (dim, k, od) in enumerate(((h, kh, ho), (wd, kw, wo))):
        if dim.known is None or k.known is None:
            done = False
            continue
        size = conv_transpose_out_size(
            dim.known,
            k.known,
            attrs["stride"][i],
            attrs["padding"][i],
            attrs["output_padding"][i],
            attrs["dilation"][i],
        )
        if size <= 0:
            raise ShapeMismatchError(f"conv_transpose2d: output size {size} <= 0")
        bind_dim(od, size)
    return done


def _conv_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: attrs[k] for k in ("stride", "padding", "dilation", "groups")}


def _vjp_conv_transpose(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    x, w = node.inputs
    attrs = _conv_attrs(node.attrs)
    # conv2d over g gives H + floor(output_padding / stride) rows (likewise columns): output_padding
    # >= stride, which dilation > stride allows, adds output positions no input position reaches.
    # The input gradient is then the first H rows, and the weight gradient sees x padded with zeros.
    op, s = node.attrs["output_padding"], node.attrs["stride"]
    extra = [op[i] // s[i] for i in range(2)]
    n, c, h, wd = x.known_shape
    full = (n, c, h + extra[0], wd + extra[1])
    crop = dict(starts=(None, None, None, None), stops=(None, None, h, wd), steps=(None, None, None, None))
    gx = gw = None
    if b.needs_grad(x):
        gx = b.emit("conv2d", g, w, **attrs)
        if any(extra):
            gx = b.emit("slice", gx, **crop)
    if b.needs_grad(w):
        xs = b.emit("slice_grad", x, input_shape=full, **crop) if any(extra) else x
        gw = b.emit("conv2d_weight_grad", g, xs, weight_shape=w.known_shape, **attrs)
    return [gx, gw]


primitive(
    "conv_transpose2d",
    ("input", "weight"),
    _conv_transpose_rule,
    attrs=dict(_CONVT),
    vjp=_vjp_conv_transpose,
    doc="transposed convolution, NCHW input, weight [in, out/groups, kh, kw] "
    "(torch.nn.functional.conv_transpose2d, no bias)",
)


def _vjp_conv2d_input_grad(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    # conv2d_input_grad(grad, weight) is bilinear: <g, dX(grad, w)> = <conv2d(g, w), grad>
    grad, w = node.inputs
    attrs = _conv_attrs(node.attrs)
    gg = b.emit("conv2d", g, w, **attrs) if b.needs_grad(grad) else None
    gw = b.emit("conv2d_weight_grad", g, grad, weight_shape=w.known_shape, **attrs) if b.needs_grad(w) else None
    return [gg, gw]


if registry.get("conv2d_input_grad").vjp is None:
    registry.get("conv2d_input_grad").vjp = _vjp_conv2d_input_grad


# ---------------------------------------------------------------- tril_mask
def _tril_mask_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    bind_kind(out.kind, "bool")
    split = _tail(ins[0].shape, 2)
    if split is None:
        return False
    _, (rows, cols) = split
    unify(out.shape, _raw([rows, cols], None, []))
    return True


def _positions_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    bind_kind(out.kind, "int")
    axis = attrs["axis"]
    if axis >= 0:
        dims = known_rank_prefix(ins[0].shape, axis + 1)
        if dims is None:
            return False
        d = dims[axis]
    else:
        split = _tail(ins[0].shape, -axis)
        if split is None:
            return False
        d = split[1][0]
    unify(out.shape, _raw([d], None, []))
    return True


def known_rank_prefix(shape: SymShape, n: int) -> list[Dim] | None:
    """The first ``n`` dims of ``shape`` once it is known to have them, else None."""
    r = shape.resolve()
    if len(r.prefix) >= n:
        return list(r.prefix[:n])
    if r.variadic is None:
        raise ShapeMismatchError(
            f"positions: axis {n - 1} is out of range for a rank-{len(r.prefix) + len(r.suffix)} input"
        )
    return None


primitive(
    "positions",
    ("like",),
    _positions_rule,
    attrs={"axis": -1},
    nondiff=("like",),
    doc="int [n]: 0..n-1 for n = like.shape[axis] (token positions, iota)",
)
primitive(
    "tril_mask",
    ("like",),
    _tril_mask_rule,
    attrs={"diagonal": 0},
    nondiff=("like",),
    doc="bool [L, S]: True where column <= row + diagonal for the last two axes of like (causal mask)",
)

__all__ = ["conv_transpose_out_size"]
