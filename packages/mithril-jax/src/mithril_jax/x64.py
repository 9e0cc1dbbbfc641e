"""Scoped 64-bit mode: float64 for one backend without flipping JAX's global flag.

JAX canonicalises every dtype to 32 bits unless ``jax_enable_x64`` is on. That flag
is a JAX *state*: a process-wide default plus a thread-local override that
``jax.enable_x64(True)`` (JAX >= 0.8; ``jax.experimental.enable_x64()`` before)
sets for the duration of a ``with`` block. It is part of jit's cache key and of the
trace context, so a function traced inside the block is compiled for 64-bit types.

A float64 :class:`~mithril_jax.JaxBackend` runs everything it does (array creation,
kernels, jit-compiled functions) inside that block. Outside it, user code sees
JAX exactly as configured: ``jnp.ones(3).dtype`` stays float32 when x64 is off.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import jax
import jax.numpy as jnp


def x64_context() -> AbstractContextManager[Any]:
    """A context manager that turns 64-bit types on in this thread, then restores."""
    state = getattr(jax, "enable_x64", None)
    if state is not None and callable(state):
        return state(True)
    from jax.experimental import enable_x64  # type: ignore[attr-defined]  # JAX < 0.8 only

    return enable_x64(True)


def x64_enabled() -> bool:
    """Whether 64-bit types are on here and now (global flag or an enclosing scope)."""
    value = getattr(getattr(jax, "enable_x64", None), "value", None)
    if isinstance(value, bool):
        return value
    return bool(jax.config.read("jax_enable_x64"))


def int_dtype() -> Any:
    """The integer dtype of kind 'int': int64 when 64-bit types are on, else int32."""
    return jnp.int64 if x64_enabled() else jnp.int32


__all__ = ["int_dtype", "x64_context", "x64_enabled"]
