"""Testing tools for backend packages: Mithril's conformance suite.

* :mod:`mithril.testing.reference`: an independent NumPy float64 reference of every core primitive;
* :mod:`mithril.testing.cases`: the cases (inputs, attributes) per primitive, and block cases;
* :mod:`mithril.testing.conformance`: the pytest tests; a backend package runs them with
  ``from mithril.testing.conformance import *`` and a ``mithril_backend_factory`` fixture
  (see that module's docstring);
* :mod:`mithril.testing.pytest_plugin`: default fixtures and deselection, loaded by pytest;
* :mod:`mithril.testing.primitive_check`: for the author of a custom primitive,
  ``check_primitive(name, shapes=..., backends=...)`` (gradients by finite differences and agreement
  across backends) and ``check_gradient``;
* :mod:`mithril.testing.primitive_reference`: generates docs/primitives.md from the definitions.

Submodules load on first use (the pytest plugin lives here and is imported by every pytest run).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "BLOCK_CASES": "cases",
    "PRIMITIVE_CASES": "cases",
    "BlockCase": "cases",
    "PrimitiveCase": "cases",
    "cases_for": "cases",
    "REFERENCE": "reference",
    "check_primitive": "primitive_check",
    "check_gradient": "primitive_check",
    "PrimitiveReport": "primitive_check",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'mithril.testing' has no attribute {name!r}")


__all__ = [
    "BLOCK_CASES",
    "PRIMITIVE_CASES",
    "REFERENCE",
    "BlockCase",
    "PrimitiveCase",
    "PrimitiveReport",
    "cases_for",
    "check_gradient",
    "check_primitive",
]
