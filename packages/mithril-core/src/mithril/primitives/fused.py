"""Optional fused primitives: emitted by the fusion passes for backends that implement them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..shapes.kinds import KindVar, bind_kind, unify_kinds
from ..shapes.rules import at_least_rank, with_rank
from ..shapes.symbolic import _raw, unify, unify_dims
from .base import REQUIRED, Term, pairs_normalizer, primitive
from .nn import _CONV, _MAXPOOL, _pool_normalizer, _pool_rule


def _linear_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    x, w, b = ins
    for t in (w, b):
        unify_kinds(x.kind, t.kind)
    unify_kinds(x.kind, out.kind)
    split = at_least_rank(x.shape, 1)
    if split is None:
        return False
    batch, (k,) = split
    o, k2 = with_rank(w.shape, 2)
    (o2,) = with_rank(b.shape, 1)
    unify_dims(k, k2)
    unify_dims(o, o2)
    r = batch.resolve()
    unify(out.shape, _raw(r.prefix, r.variadic, r.suffix + [o]))
    return True


primitive(
    "linear",
    ("input", "weight", "bias"),
    _linear_rule,
    optional=True,
    doc="input @ weight.T + bias (torch.nn.functional.linear); emitted by fusion, never differentiated",
)


def _pool_with_indices_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    if attrs["result"] == "indices":
        bind_kind(out.kind, "int")
        # the indices have the pooled shape: run the pooling rule on a float stand-in for them
        return _pool_rule(ins, Term(out.shape, KindVar()), attrs)
    return _pool_rule(ins, out, attrs)


def _pool_grad_indices_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    x, idx, g = ins
    bind_kind(idx.kind, "int")
    unify(idx.shape, g.shape)
    unify_kinds(x.kind, g.kind)
    unify_kinds(x.kind, out.kind)
    unify(x.shape, out.shape)
    return True


_POOL_NORM = _pool_normalizer("kernel_size", "stride", "padding", "dilation")
primitive(
    "max_pool2d_with_indices",
    ("input",),
    _pool_with_indices_rule,
    optional=True,
    attrs={**_MAXPOOL, "result": "output"},
    results=("output", "indices"),
    normalize=_POOL_NORM,
    doc="max_pool2d and, per output, the flat index (row * width + column) of the window's first max "
    "in its input plane; emitted by fusion, never differentiated. Only max_pool2d_grad_indices reads "
    "the indices, so a backend may store them in its own encoding while compiling (torch: int8 "
    "offsets in the window under torch.compile)",
)
primitive(
    "max_pool2d_grad_indices",
    ("input", "indices", "grad"),
    _pool_grad_indices_rule,
    optional=True,
    attrs=dict(_MAXPOOL),
    normalize=_POOL_NORM,
    shape_only=("input",),
    doc="max_pool2d_grad from saved indices: each grad added at its index; emitted by fusion",
)


CONV_GRAD_RESULTS = ("input", "weight", "bias")
_pairs = pairs_normalizer("stride", "padding", "dilation")


def _conv_backward_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    x, w, g = ins
    for t in (w, g):
        unify_kinds(x.kind, t.kind)
    unify_kinds(x.kind, out.kind)
    result = attrs["result"]
    if result == "bias":
        o, *_ = with_rank(w.shape, 4)
        unify(out.shape, _raw([o], None, []))
    else:
        unify(out.shape, (x if result == "input" else w).shape)
    return True


def _conv_backward_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    attrs = _pairs(attrs)
    wanted = tuple(attrs["wanted"])
    if not wanted or set(wanted) - set(CONV_GRAD_RESULTS) or attrs["result"] not in wanted:
        raise ValueError(f"wanted must name results among {CONV_GRAD_RESULTS}, including result")
    attrs["wanted"] = tuple(r for r in CONV_GRAD_RESULTS if r in wanted)
    return attrs


primitive(
    "conv2d_backward",
    ("input", "weight", "grad"),
    _conv_backward_rule,
    optional=True,
    attrs={**_CONV, "wanted": REQUIRED, "result": "weight"},
    results=CONV_GRAD_RESULTS,
    normalize=_conv_backward_attrs,
    doc="the gradients of conv2d (plus a per-channel bias) wrt input, weight and bias from the output "
    "gradient, in one call that computes only the results in ``wanted`` (torch: one "
    "convolution_backward); emitted by fusion",
)
