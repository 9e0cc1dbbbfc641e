"""Lazy package attributes for plugin packages, so loading an entry point imports no framework."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name`` is imported from the relative module
    ``where[name]`` on first access, then cached in the package's namespace.

    ``__getattr__ = lazy_attributes(__name__, {"TorchBackend": ".backend"})`` keeps
    ``import mithril_torch`` (which loading the plugin entry point does) from importing torch.
    """

    def __getattr__(name: str) -> Any:
        if name in where:
            module = importlib.import_module(package)
            value = getattr(importlib.import_module(where[name], package), name)
            setattr(module, name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


__all__ = ["lazy_attributes"]
