"""The core primitives: every backend implements a kernel for each."""

from . import compile_time, elementwise, fused, nn, reductions, structure  # noqa: F401  (registers definitions)
from . import indexing  # noqa: F401,E402  (zoo primitives; sets conv2d_input_grad's gradient rule)
from . import recurrent  # noqa: F401,E402  (composites: lstm, gru)
from . import randomness  # noqa: F401,E402  (random primitives: bernoulli)
from . import normalization  # noqa: F401,E402  (fused composites: normalize, normalize_grad, relu_grad)
from . import pooling  # noqa: F401,E402  (composite: adaptive_avg_pool2d)
from .base import REQUIRED, Primitive, PrimitiveRegistry, Term, primitive, registry

CORE_PRIMITIVES: tuple[str, ...] = tuple(
    n for n in registry.names()
    if not (registry.get(n).compile_time or registry.get(n).optional or registry.get(n).expand is not None
            or registry.get(n).random)
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

__all__ = ["REQUIRED", "Primitive", "PrimitiveRegistry", "Term", "primitive", "registry", "CORE_PRIMITIVES",
           "COMPOSITE_PRIMITIVES", "RANDOM_PRIMITIVES"]
