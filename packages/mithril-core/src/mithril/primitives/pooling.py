"""``adaptive_avg_pool2d(input; output_size)``: torch's adaptive average pooling, as a composite.

Output cell ``(i, j)`` averages rows ``floor(i H / oh) .. ceil((i + 1) H / oh)`` and the
same for columns (windows may overlap when the size does not divide). Once ``H`` and
``W`` are concrete the node expands (see :mod:`mithril.ir.passes.expand`): to a reshape
and a mean when ``oh`` divides ``H`` and ``ow`` divides ``W``, otherwise to two products
with constant averaging matrices, ``A_h @ x @ A_w.T`` (``A[i, k] = 1 / len(window i)``
for ``k`` in window ``i``). Gradients follow from those primitives on every backend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelBuildError
from ..shapes.kinds import bind_kind, unify_kinds
from ..shapes.rules import at_least_rank
from ..shapes.symbolic import Dim, _raw, unify
from .base import Term, primitive

if TYPE_CHECKING:  # pragma: no cover
    from ..ir.graph import GraphBuilder, Node, Value


def _normalize(attrs: dict[str, Any]) -> dict[str, Any]:
    size = attrs["output_size"]
    pair = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(pair) != 2 or min(pair) < 1:
        raise ModelBuildError(f"adaptive_avg_pool2d: output_size must be a positive int or pair, got {size!r}")
    attrs["output_size"] = pair
    return attrs


def _rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
    bind_kind(ins[0].kind, "float")
    unify_kinds(ins[0].kind, out.kind)
    split = at_least_rank(ins[0].shape, 2)
    if split is None:
        return False
    lead, (_h, _w) = split
    oh, ow = attrs["output_size"]
    r = lead.resolve()
    unify(out.shape, _raw(r.prefix, r.variadic, r.suffix + [Dim(oh), Dim(ow)]))
    return True


def averaging_matrix(n: int, m: int) -> np.ndarray:
    """``[m, n]``: row ``i`` averages torch's adaptive window ``i`` of ``n`` positions."""
    a = np.zeros((m, n))
    for i in range(m):
        start, stop = (i * n) // m, math.ceil((i + 1) * n / m)
        a[i, start:stop] = 1.0 / (stop - start)
    return a


def _expand(b: GraphBuilder, node: Node) -> Value:
    (x,) = node.inputs
    *lead, h, w = x.known_shape
    oh, ow = node.attrs["output_size"]
    if h % oh == 0 and w % ow == 0:
        windows = b.emit("reshape", x, shape=(*lead, oh, h // oh, ow, w // ow))
        return b.emit("mean", windows, axis=(-3, -1), keepdims=False)
    rows = b.emit("matmul", b.const(averaging_matrix(h, oh)), x)  # [..., oh, W]
    return b.emit("matmul", rows, b.const(averaging_matrix(w, ow).T))  # [..., oh, ow]


primitive(
    "adaptive_avg_pool2d",
    ("input",),
    _rule,
    attrs={"output_size": (1, 1)},
    normalize=_normalize,
    expand=_expand,
    doc="torch.nn.functional.adaptive_avg_pool2d over the last two axes (any sizes)",
)
