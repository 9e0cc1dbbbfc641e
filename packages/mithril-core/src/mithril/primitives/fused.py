"""Optional fused primitives: emitted by the fusion passes for backends that implement them."""

from __future__ import annotations

from ..shapes.kinds import unify_kinds
from ..shapes.rules import at_least_rank
from ..shapes.symbolic import _raw, unify, unify_dims
from ..shapes.rules import with_rank
from .base import primitive


def _linear_rule(ins, out, attrs) -> bool:
    x, w, b = ins
    for t in (w, b):
        unify_kinds(x.kind, t.kind)
    unify_kinds(x.kind, out.kind)
    batch, (k,) = at_least_rank(x.shape, 1)
    o, k2 = with_rank(w.shape, 2)
    (o2,) = with_rank(b.shape, 1)
    unify_dims(k, k2)
    unify_dims(o, o2)
    r = batch.resolve()
    unify(out.shape, _raw(r.prefix, r.variadic, r.suffix + [o]))
    return True


primitive("linear", ("input", "weight", "bias"), _linear_rule, optional=True,
          doc="input @ weight.T + bias (torch.nn.functional.linear); emitted by fusion, never differentiated")
