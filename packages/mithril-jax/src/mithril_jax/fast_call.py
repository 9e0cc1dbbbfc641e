"""The per-call fast path of a jitted JAX executable: ``evaluate`` with no Python checks.

``PhysicalModel.evaluate`` checks every array (type, device, shape, dtype) before it
runs a compiled graph: about 40 µs per call, which is a third of a small model's
jitted step. A jitted function, though, is traced once per argument signature
(dict keys, shapes, dtypes, shardings), and JAX re-checks that signature on every
call in C++. So the executable is traced only from the checked path; a trace
anywhere else means the arguments differ from the ones Mithril checked, and the
guard raises :class:`SignatureChanged` *during tracing*, before anything runs.
``fast_call`` then returns ``None`` and ``evaluate`` takes the checked path, which
rejects the arguments with Mithril's error or compiles the new shape set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp

#: the concrete class of jax.Array values (not tracers, not NumPy arrays)
_ARRAY_TYPE = type(jnp.zeros(()))


class SignatureChanged(Exception):
    """Raised while tracing outside the checked path: the caller's arguments are not the checked ones."""


class TraceGuard:
    """Allows tracing only while :attr:`open` (inside the checked path)."""

    def __init__(self) -> None:
        self.open = False

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(*args: Any) -> Any:
            if not self.open:
                raise SignatureChanged
            return fn(*args)

        return guarded


class GuardedExecutable:
    """A jitted executable whose checked ``run`` may trace and whose ``fast_call`` may not."""

    def __init__(self, inner: Any, guard: TraceGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._fn = inner._fn  # the jitted (guarded) function

    @property
    def source(self) -> str | None:
        return getattr(self._inner, "source", None)

    def run(self, params: Any, inputs: Any, cotangents: Any) -> Any:
        self._guard.open = True
        try:
            return self._inner.run(params, inputs, cotangents)
        finally:
            self._guard.open = False

    def fast_call(self, params: Mapping[str, Any], inputs: Mapping[str, Any], cotangents: Mapping[str, Any]) -> Any:
        """``(outputs, gradients, state)``, or ``None`` when the checked path must decide."""
        for d in (params, inputs, cotangents):
            for v in d.values():
                if type(v) is not _ARRAY_TYPE:
                    return None
        try:
            return self._fn(params, inputs, cotangents)
        except SignatureChanged:
            return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


__all__ = ["GuardedExecutable", "SignatureChanged", "TraceGuard"]
