"""``adam_update``: one parameter's whole Adam/AdamW step as one node, a fused composite.

``adam_update(param, grad, m, v, lr, step; beta1, beta2, eps, weight_decay, decoupled, donated, result)``
has three results, ``param``, ``m`` and ``v``: the new parameter and moments. ``lr`` and ``step``
(the 1-based step number, a float) are scalars. Its expansion is the update written in core
primitives (:func:`adam_math`), so a backend without a kernel for it runs exactly the arithmetic
:class:`~mithril.training.optim.Adam` always emitted; a backend with a kernel makes one call per
parameter (torch: ``torch._fused_adamw_``, in place).

``donated=True`` says that ``param``, ``m`` and ``v`` are donated state that no later node reads,
so a kernel may overwrite them; the optimizer never sets it (it cannot see the passes that run
after it): a backend's lowering does, where it has checked that this holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import ShapeMismatchError
from ...primitives.base import Primitive, Term, registry
from ...shapes.kinds import bind_kind, unify_kinds
from ...shapes.symbolic import unify
from ..expr import X

if TYPE_CHECKING:  # pragma: no cover
    from ...ir.graph import GraphBuilder, Node, Value

RESULTS = ("param", "m", "v")


def adam_math(
    p: X, g: X, m: X, v: X, lr: X, t: X, *, beta1: float, beta2: float, eps: float, weight_decay: float, decoupled: bool
) -> dict[str, X]:
    """Adam's step in core primitives (bias-corrected moments; decoupled or L2 weight decay)."""
    if weight_decay and decoupled:
        p = p * (1.0 - lr * weight_decay)
    elif weight_decay:
        g = g + weight_decay * p
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g.square()
    bias1 = 1.0 - beta1**t
    bias2 = 1.0 - beta2**t
    denom = (v / bias2).sqrt() + eps
    return {"param": p - (lr / bias1) * m / denom, "m": m, "v": v}


def _rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    p = ins[0]
    bind_kind(p.kind, "float")
    for t in ins[1:]:
        bind_kind(t.kind, "float")
    for t in ins[1:4]:
        unify(p.shape, t.shape)
    for name, t in zip(("lr", "step"), ins[4:]):
        dims = t.shape.dims()
        if dims is None:
            return False
        if dims:
            raise ShapeMismatchError(f"adam_update: {name} must be a scalar, got shape {t.shape!r}")
    unify_kinds(p.kind, out.kind)
    unify(p.shape, out.shape)
    return True


def _expand(b: GraphBuilder, node: Node) -> dict[str, Value]:
    a = node.attrs
    p, g, m, v, lr, t = (X(b, x) for x in node.inputs)
    new = adam_math(
        p,
        g,
        m,
        v,
        lr,
        t,
        beta1=a["beta1"],
        beta2=a["beta2"],
        eps=a["eps"],
        weight_decay=a["weight_decay"],
        decoupled=a["decoupled"],
    )
    return {k: x.v for k, x in new.items()}


def _attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    for k in ("beta1", "beta2", "eps", "weight_decay"):
        attrs[k] = float(attrs[k])
    attrs["decoupled"] = bool(attrs["decoupled"])
    attrs["donated"] = bool(attrs["donated"])
    return attrs


ADAM_UPDATE = registry.register(
    Primitive(
        "adam_update",
        ("param", "grad", "m", "v", "lr", "step"),
        _rule,
        attrs={
            "beta1": 0.9,
            "beta2": 0.999,
            "eps": 1e-8,
            "weight_decay": 0.0,
            "decoupled": False,
            "donated": False,
            "result": "param",
        },
        normalize=_attrs,
        expand=_expand,
        results=RESULTS,
        nondiff=("param", "grad", "m", "v", "lr", "step"),
        doc="one parameter's Adam/AdamW step: results param, m, v; fused where the backend has a kernel",
    ),
    origin="mithril.optim",
)


def adam_update(p: X, g: X, m: X, v: X, lr: X, t: X, **attrs: Any) -> dict[str, X]:
    """The new ``param``, ``m`` and ``v`` as one ``adam_update`` call (three nodes of one group)."""
    return {r: p.emit("adam_update", g, m, v, lr, t, result=r, **attrs) for r in RESULTS}


__all__ = ["ADAM_UPDATE", "RESULTS", "adam_math", "adam_update"]
