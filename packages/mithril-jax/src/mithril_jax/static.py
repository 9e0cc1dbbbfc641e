"""``jax.jit`` with static keyword attributes, and attributes made hashable for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax

F = TypeVar("F", bound=Callable[..., Any])


def static_jit(*names: str) -> Callable[[F], F]:
    """Decorate a kernel body: jit-compiled, the keyword attributes ``names`` static."""

    def wrap(fn: F) -> F:
        return jax.jit(fn, static_argnames=names)  # type: ignore[return-value]  # a jitted F is called as F

    return wrap


def hashable(value: Any) -> Any:
    """Lists (nested) become tuples so an attribute can be a static jit argument."""
    if isinstance(value, (list, tuple)):
        return tuple(hashable(v) for v in value)
    return value


__all__ = ["hashable", "static_jit"]
