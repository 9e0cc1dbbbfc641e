"""The core primitives: every backend implements a kernel for each."""

from . import compile_time, elementwise, fused, nn, reductions, structure  # noqa: F401  (registers definitions)
from . import indexing  # noqa: F401,E402  (zoo primitives; sets conv2d_input_grad's gradient rule)
from .base import REQUIRED, Primitive, PrimitiveRegistry, Term, primitive, registry

CORE_PRIMITIVES: tuple[str, ...] = tuple(
    n for n in registry.names() if not (registry.get(n).compile_time or registry.get(n).optional)
)

OPTIONAL_PRIMITIVES: tuple[str, ...] = tuple(n for n in registry.names() if registry.get(n).optional)
"""Fused primitives a backend may implement to run faster (see mithril.ir.passes.fuse)."""
"""Names of the primitives defined by the core itself (plugins add more)."""

__all__ = ["REQUIRED", "Primitive", "PrimitiveRegistry", "Term", "primitive", "registry", "CORE_PRIMITIVES"]
