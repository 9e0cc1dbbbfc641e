"""Fused composites: ``normalize`` and ``normalize_grad`` (the core of LayerNorm, BatchNorm and
GroupNorm), and ``relu_grad``.

* ``normalize(input; axes, eps, result)`` over ``axes`` (biased variance, as torch's
  normalisation layers) has three results: ``output`` = ``(x - mean) * rstd``, and the
  statistics ``mean`` and ``rstd`` = ``1 / sqrt(var + eps)``, both with the reduced axes
  kept as size 1;
* ``normalize_grad(input, grad, mean, rstd; axes)``: the input gradient of ``output``
  from the saved statistics, ``rstd (g - mean(g) - x̂ mean(g x̂))`` with ``x̂ = (x - mean) rstd``;
* ``normalize_affine(input, weight, bias; axes, eps, result)``: ``normalize`` followed by
  ``* weight + bias`` (broadcast against the input), the same three results;
  ``normalize_affine_grad(input, weight, grad, mean, rstd; axes, result)`` has the results
  ``input``, ``weight`` and ``bias`` (torch: one ``native_batch_norm_backward`` or
  ``native_layer_norm_backward`` call for all three).

Both are composites: a backend with a kernel for one keeps it as one node (torch:
``native_layer_norm``/``native_batch_norm``, which return the statistics with the
output, and their backward kernels; JAX: one fused XLA expression), a backend
without one gets the expansion into ``mean``, ``sub``, ``mul``, ``sqrt``, ``div``
(see :mod:`mithril.ir.passes.expand`). The nodes asking for the results of one
``normalize`` call share one kernel call (or one expansion), so the gradient rule,
which reads ``mean`` and ``rstd``, recomputes nothing, and BatchNorm's running
statistics come from the same call.

* ``relu_grad(activation, grad)``: the gradient of ``relu`` from its output ``activation``,
  ``grad where output > 0 else 0`` (torch: ``threshold_backward``, 20x faster on a
  CPU than ``where(greater(...))``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..shapes.kinds import bind_kind, unify_kinds
from ..shapes.rules import broadcast, normalize_axis
from ..shapes.symbolic import Dim, _raw, unify
from .base import Term, primitive, same_node
from .grad_utils import reduced_count, unbroadcast

if TYPE_CHECKING:  # pragma: no cover
    from ..ir.graph import GraphBuilder, Node, Value

RESULTS = ("output", "mean", "rstd")


def _axes(attrs: dict[str, Any]) -> dict[str, Any]:
    axes = attrs["axes"]
    attrs["axes"] = (int(axes),) if isinstance(axes, int) else tuple(int(a) for a in axes)
    if "eps" in attrs:
        attrs["eps"] = float(attrs["eps"])
    return attrs


def _same_as_input(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    for t in ins:
        bind_kind(t.kind, "float")
        unify_kinds(ins[0].kind, t.kind)
        unify(ins[0].shape, t.shape)
    unify_kinds(ins[0].kind, out.kind)
    unify(ins[0].shape, out.shape)
    return True


def _stats_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    """``mean``/``rstd``: the input's shape with the normalised axes kept as 1."""
    x = ins[0]
    bind_kind(x.kind, "float")
    unify_kinds(x.kind, out.kind)
    dims = x.shape.dims()
    if dims is None:
        return False
    rank = len(dims)
    axes = {normalize_axis(a, rank, "normalize: ") for a in attrs["axes"]}
    unify(out.shape, _raw([Dim(1) if i in axes else d for i, d in enumerate(dims)], None, []))
    return True


def _normalize_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    if attrs["result"] == "output":
        return _same_as_input(ins, out, attrs)
    return _stats_rule(ins, out, attrs)


def _normalize_grad_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    x, g, mean, rstd = ins
    _same_as_input([x, g], out, attrs)
    done = True
    for s in (mean, rstd):
        unify_kinds(x.kind, s.kind)
        done = _stats_rule([x], s, attrs) and done
    return done


def _stats(b: GraphBuilder, x: Value, axes: tuple[int, ...], eps: float) -> tuple[Value, Value, Value]:
    """``(x - mean, mean, 1 / sqrt(var + eps))`` over ``axes``, written with core primitives."""
    mean = b.emit("mean", x, axis=axes, keepdims=True)
    centered = b.emit("sub", x, mean)
    var = b.emit("mean", b.emit("mul", centered, centered), axis=axes, keepdims=True)
    return centered, mean, b.emit("div", b.const(1.0), b.emit("sqrt", b.emit("add", var, b.const(eps))))


def _expand_normalize(b: GraphBuilder, node: Node) -> dict[str, Value]:
    centered, mean, rstd = _stats(b, node.inputs[0], node.attrs["axes"], node.attrs["eps"])
    return {"output": b.emit("mul", centered, rstd), "mean": mean, "rstd": rstd}


def _expand_normalize_grad(b: GraphBuilder, node: Node) -> Value:
    x, g, mean, rstd = node.inputs
    axes = node.attrs["axes"]
    xhat = b.emit("mul", b.emit("sub", x, mean), rstd)
    mean_g = b.emit("mean", g, axis=axes, keepdims=True)
    mean_gx = b.emit("mean", b.emit("mul", g, xhat), axis=axes, keepdims=True)
    return b.emit("mul", b.emit("sub", b.emit("sub", g, mean_g), b.emit("mul", xhat, mean_gx)), rstd)


def _recompute_normalize(b: GraphBuilder, node: Node, siblings: Mapping[str, Value]) -> Value | None:
    """``output`` again from the call's saved ``mean`` and ``rstd`` (element-wise); the statistics: None."""
    if node.attrs["result"] != "output" or not {"mean", "rstd"} <= siblings.keys():
        return None
    x = node.inputs[0]
    out = b.emit("mul", b.emit("sub", x, siblings["mean"]), siblings["rstd"])
    if node.primitive.name == "normalize_affine":
        _, w, bias = node.inputs
        out = b.emit("add", b.emit("mul", out, w), bias)
    return out


def _vjp_normalize(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    x, attrs = node.inputs[0], node.attrs
    stat = {r: b.emit("normalize", x, **{**attrs, "result": r}) for r in ("mean", "rstd")}
    if attrs["result"] == "output":
        return [b.emit("normalize_grad", x, g, stat["mean"], stat["rstd"], axes=attrs["axes"])]
    return [_vjp_stat(b, x, g, attrs, stat)]


def _vjp_stat(b: GraphBuilder, x: Value, g: Value, attrs: dict[str, Any], stat: dict[str, Value]) -> Value:
    """Input gradient through the ``mean`` or ``rstd`` result."""
    result = attrs["result"]
    n = b.const(float(reduced_count(x.known_shape, attrs["axes"])))
    if result == "mean":  # d mean / dx = 1/n
        return b.emit("broadcast_to", b.emit("div", g, n), shape=x.shape)
    # d rstd / dx = -rstd³ (x - mean) / n
    r3 = b.emit("mul", stat["rstd"], b.emit("mul", stat["rstd"], stat["rstd"]))
    scale = b.emit("div", b.emit("mul", g, r3), n)
    return b.emit("neg", b.emit("mul", b.emit("sub", x, stat["mean"]), scale))


primitive(
    "normalize",
    ("input",),
    _normalize_rule,
    attrs={"axes": (-1,), "eps": 1e-5, "result": "output"},
    normalize=_axes,
    vjp=_vjp_normalize,
    expand=_expand_normalize,
    results=RESULTS,
    recompute=_recompute_normalize,
    doc="(x - mean) * rstd over axes (biased variance), rstd = 1/sqrt(var + eps); results output, "
    "mean, rstd (reduced axes kept); fused where the backend has a kernel",
)
primitive(
    "normalize_grad",
    ("input", "grad", "mean", "rstd"),
    _normalize_grad_rule,
    attrs={"axes": (-1,)},
    normalize=_axes,
    expand=_expand_normalize_grad,
    doc="input gradient of normalize from its saved mean and rstd: rstd (g - mean(g) - x̂ mean(g x̂))",
)


# ------------------------------------------------------------------ with an affine transform
def _normalize_affine_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    x, w, bias = ins
    for t in (w, bias):
        unify_kinds(x.kind, t.kind)
    unify(w.shape, bias.shape)
    if attrs["result"] != "output":
        return _stats_rule([x], out, attrs)
    bind_kind(x.kind, "float")
    unify_kinds(x.kind, out.kind)
    unify(x.shape, out.shape)
    return broadcast([x.shape, w.shape], out.shape)


def _expand_normalize_affine(b: GraphBuilder, node: Node) -> dict[str, Value]:
    x, w, bias = node.inputs
    n = {r: b.emit("normalize", x, axes=node.attrs["axes"], eps=node.attrs["eps"], result=r) for r in RESULTS}
    return {**n, "output": b.emit("add", b.emit("mul", n["output"], w), bias)}


def _vjp_normalize_affine(b: GraphBuilder, node: Node, g: Value) -> Sequence[Value | None]:
    (x, w, _), attrs = node.inputs, node.attrs
    stat = {r: b.emit("normalize_affine", *node.inputs, **{**attrs, "result": r}) for r in ("mean", "rstd")}
    if attrs["result"] != "output":
        return [_vjp_stat(b, x, g, attrs, stat), None, None]
    return [
        b.emit("normalize_affine_grad", x, w, g, stat["mean"], stat["rstd"], axes=attrs["axes"], result=r)
        for r in AFFINE_GRAD_RESULTS
    ]


def _normalize_affine_grad_rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    x, w, g, mean, rstd = ins
    for t in (w, g, mean, rstd):
        unify_kinds(x.kind, t.kind)
    unify(x.shape, g.shape)
    unify_kinds(x.kind, out.kind)
    unify(out.shape, {"input": x, "weight": w, "bias": w}[attrs["result"]].shape)
    return _stats_rule([x], mean, attrs) and _stats_rule([x], rstd, attrs)


def _expand_normalize_affine_grad(b: GraphBuilder, node: Node) -> dict[str, Value]:
    x, w, g, mean, rstd = node.inputs
    axes = node.attrs["axes"]
    xhat = b.emit("mul", b.emit("sub", x, mean), rstd)
    return {
        "input": b.emit("normalize_grad", x, b.emit("mul", g, w), mean, rstd, axes=axes),
        "weight": unbroadcast(b, b.emit("mul", g, xhat), w.known_shape),
        "bias": unbroadcast(b, g, w.known_shape),
    }


AFFINE_GRAD_RESULTS = ("input", "weight", "bias")
primitive(
    "normalize_affine",
    ("input", "weight", "bias"),
    _normalize_affine_rule,
    attrs={"axes": (-1,), "eps": 1e-5, "result": "output"},
    normalize=_axes,
    vjp=_vjp_normalize_affine,
    expand=_expand_normalize_affine,
    results=RESULTS,
    recompute=_recompute_normalize,
    doc="normalize(x) * weight + bias (weight and bias broadcast against x); results output, mean, rstd; "
    "fused where the backend has a kernel",
)
primitive(
    "normalize_affine_grad",
    ("input", "weight", "grad", "mean", "rstd"),
    _normalize_affine_grad_rule,
    attrs={"axes": (-1,), "result": "input"},
    normalize=_axes,
    expand=_expand_normalize_affine_grad,
    results=AFFINE_GRAD_RESULTS,
    doc="gradients of normalize_affine's output wrt input, weight and bias, from the saved statistics",
)


def _expand_relu_grad(b: GraphBuilder, node: Node) -> Value:
    y, g = node.inputs
    return b.emit("where", b.emit("greater", y, b.const(0.0)), g, b.const(0.0))


primitive(
    "relu_grad",
    ("activation", "grad"),
    _same_as_input,
    expand=_expand_relu_grad,
    recompute=same_node,
    doc="gradient of relu from its output: grad where output > 0, else 0",
)
