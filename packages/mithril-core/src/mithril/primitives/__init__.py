"""The core primitives: every backend implements a kernel for each."""

from . import (
    compile_time,
    control_flow,
    elementwise,
    fused,
    indexing,
    nn,
    normalization,
    pooling,
    randomness,
    recurrent,
    reductions,
    structure,
)
from .base import REQUIRED, Primitive, PrimitiveRegistry, Term, primitive, registry

CORE_PRIMITIVES: tuple[str, ...] = tuple(
    n
    for n in registry.names()
    if not (
        registry.get(n).compile_time
        or registry.get(n).optional
        or registry.get(n).expand is not None
        or registry.get(n).random
        or registry.get(n).subgraphs
    )
)

OPTIONAL_PRIMITIVES: tuple[str, ...] = tuple(n for n in registry.names() if registry.get(n).optional)
"""Fused primitives a backend may implement to run faster (see mithril.ir.passes.fuse)."""
"""Names of the primitives defined by the core itself (plugins add more)."""

COMPOSITE_PRIMITIVES: tuple[str, ...] = tuple(n for n in registry.names() if registry.get(n).expand is not None)
"""Primitives expanded into others once shapes are concrete (see mithril.ir.passes.expand), unless the
backend has a kernel for one (a fused composite such as ``normalize``): then it stays one node."""

RANDOM_PRIMITIVES: tuple[str, ...] = tuple(n for n in registry.names() if registry.get(n).random)
"""Primitives drawing from the per-call random stream (see mithril.ir.randomness); a backend that trains
models with them (Dropout) has a kernel ``kernel(key, *inputs, **attrs)`` for each."""

CONTROL_FLOW_PRIMITIVES: tuple[str, ...] = tuple(n for n in registry.names() if registry.get(n).subgraphs)
"""Primitives owning sub-graphs (``scan``, ``cond``; see mithril.ir.control_flow). A backend without a
``scan`` kernel gets loops unrolled (exact; build time grows with the length); without a ``cond``
kernel, a model with a branch is refused with UnsupportedError."""

# the public names, and the definition modules (imported above to register their primitives)
__all__ = [
    "COMPOSITE_PRIMITIVES",
    "CONTROL_FLOW_PRIMITIVES",
    "CORE_PRIMITIVES",
    "OPTIONAL_PRIMITIVES",
    "RANDOM_PRIMITIVES",
    "REQUIRED",
    "Primitive",
    "PrimitiveRegistry",
    "Term",
    "compile_time",
    "control_flow",
    "elementwise",
    "fused",
    "indexing",
    "nn",
    "normalization",
    "pooling",
    "primitive",
    "randomness",
    "recurrent",
    "reductions",
    "registry",
    "structure",
]
