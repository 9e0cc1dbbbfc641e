"""Random primitives: outputs drawn from the per-call random stream, not functions of their inputs.

* ``bernoulli(like; p)``: a bool array of ``like``'s shape, each element True with
  probability ``p`` independently (``like`` only lends its shape; it gets no gradient).

Every random primitive is defined with ``random=True``. Its kernel takes the node's key
first, ``kernel(key, *inputs, **attrs)``, where the key is what the backend's
:meth:`~mithril.backend.Backend.random_key` makes of the call's seed and the node's
stream (see :mod:`mithril.ir.randomness`). A new random primitive (``uniform``,
``normal``...) is one definition here and one such kernel per backend.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..shapes.kinds import bind_kind
from ..shapes.symbolic import unify
from .base import REQUIRED, Term, primitive


def _like_rule(kind: str) -> Callable[[Sequence[Term], Term, Mapping[str, Any]], bool]:
    """Output of ``like``'s shape and of ``kind``."""

    def rule(ins: Sequence[Term], out: Term, attrs: Mapping[str, Any]) -> bool:
        unify(ins[0].shape, out.shape)
        bind_kind(out.kind, kind)
        return True

    return rule


def _probability(attrs: dict[str, Any]) -> dict[str, Any]:
    p = attrs["p"]
    if isinstance(p, bool) or not isinstance(p, (int, float)) or math.isnan(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    attrs["p"] = float(p)
    return attrs


bernoulli = primitive(
    "bernoulli",
    ("like",),
    _like_rule("bool"),
    attrs={"p": REQUIRED},
    nondiff=("like",),
    normalize=_probability,
    random=True,
    doc="bool of like's shape, each element True with probability p (a fresh draw per call)",
)

RANDOM = ("bernoulli",)
__all__ = ["RANDOM"]
