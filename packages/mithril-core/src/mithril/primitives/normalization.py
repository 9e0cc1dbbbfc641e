"""Fused composites: ``normalize`` and ``normalize_grad`` (the core of LayerNorm, BatchNorm and
GroupNorm), and ``relu_grad``.

* ``normalize(input; axes, eps)`` = ``(x - mean(x)) / sqrt(var(x) + eps)`` over ``axes``
  (biased variance, as torch's normalisation layers);
* ``normalize_grad(input, grad; axes, eps)``: its input gradient,
  ``(g - mean(g) - x̂ mean(g x̂)) / sqrt(var(x) + eps)``.

Both are composites: a backend with a kernel for one keeps it as one node (torch:
``native_layer_norm``/``native_batch_norm`` and their backward kernels; JAX: one
fused XLA expression), a backend without one gets the expansion into ``mean``,
``sub``, ``mul``, ``sqrt``, ``div`` (see :mod:`mithril.ir.passes.expand`). The
gradient rule of ``normalize`` emits ``normalize_grad``, so the backward pass is
one kernel too where the backend has it.

* ``relu_grad(activation, grad)``: the gradient of ``relu`` from its output ``activation``,
  ``grad where output > 0 else 0`` (torch: ``threshold_backward``, 20x faster on a
  CPU than ``where(greater(...))``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..shapes.kinds import bind_kind, unify_kinds
from ..shapes.symbolic import unify
from .base import primitive

if TYPE_CHECKING:  # pragma: no cover
    from ..ir.graph import GraphBuilder, Node, Value


def _axes(attrs: dict[str, Any]) -> dict[str, Any]:
    axes = attrs["axes"]
    attrs["axes"] = (int(axes),) if isinstance(axes, int) else tuple(int(a) for a in axes)
    attrs["eps"] = float(attrs["eps"])
    return attrs


def _same_as_input(ins, out, attrs) -> bool:  # type: ignore[no-untyped-def]
    for t in ins:
        bind_kind(t.kind, "float")
        unify_kinds(ins[0].kind, t.kind)
        unify(ins[0].shape, t.shape)
    unify_kinds(ins[0].kind, out.kind)
    unify(ins[0].shape, out.shape)
    return True


def _stats(b: "GraphBuilder", x: "Value", axes: tuple[int, ...], eps: float) -> tuple["Value", "Value"]:
    """``(x - mean, sqrt(var + eps))`` over ``axes``, written with core primitives."""
    centered = b.emit("sub", x, b.emit("mean", x, axis=axes, keepdims=True))
    var = b.emit("mean", b.emit("mul", centered, centered), axis=axes, keepdims=True)
    return centered, b.emit("sqrt", b.emit("add", var, b.const(eps)))


def _expand_normalize(b: "GraphBuilder", node: "Node") -> "Value":
    centered, std = _stats(b, node.inputs[0], node.attrs["axes"], node.attrs["eps"])
    return b.emit("div", centered, std)


def _expand_normalize_grad(b: "GraphBuilder", node: "Node") -> "Value":
    x, g = node.inputs
    axes = node.attrs["axes"]
    centered, std = _stats(b, x, axes, node.attrs["eps"])
    xhat = b.emit("div", centered, std)
    mean_g = b.emit("mean", g, axis=axes, keepdims=True)
    mean_gx = b.emit("mean", b.emit("mul", g, xhat), axis=axes, keepdims=True)
    return b.emit("div", b.emit("sub", b.emit("sub", g, mean_g), b.emit("mul", xhat, mean_gx)), std)


def _vjp_normalize(b: "GraphBuilder", node: "Node", g: "Value") -> list["Value | None"]:
    return [b.emit("normalize_grad", node.inputs[0], g, **node.attrs)]


primitive("normalize", ("input",), _same_as_input, attrs={"axes": (-1,), "eps": 1e-5}, normalize=_axes,
          vjp=_vjp_normalize, expand=_expand_normalize,
          doc="(x - mean) / sqrt(var + eps) over axes (biased variance); fused where the backend has a kernel")
primitive("normalize_grad", ("input", "grad"), _same_as_input, attrs={"axes": (-1,), "eps": 1e-5},
          normalize=_axes, expand=_expand_normalize_grad,
          doc="input gradient of normalize: (g - mean(g) - x̂ mean(g x̂)) / sqrt(var + eps)")


def _expand_relu_grad(b: "GraphBuilder", node: "Node") -> "Value":
    y, g = node.inputs
    return b.emit("where", b.emit("greater", y, b.const(0.0)), g, b.const(0.0))


primitive("relu_grad", ("activation", "grad"), _same_as_input, expand=_expand_relu_grad,
          doc="gradient of relu from its output: grad where output > 0, else 0")
