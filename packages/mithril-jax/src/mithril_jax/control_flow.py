"""Kernels of the control-flow primitives (mithril.ir.control_flow): ``jax.lax.scan`` and, under a trace
(``jax.jit``), ``jax.lax.switch``; an eager ``cond`` is a Python branch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp


def scan(
    *inputs: Any, body: Callable[..., Sequence[Any]], n_carry: int, n_xs: int, length: int, reverse: bool
) -> tuple[Any, ...]:
    """``jax.lax.scan`` of ``body`` over axis 0 of the ``xs``; returns ``(*final carries, *stacked ys)``."""
    carry = tuple(inputs[:n_carry])
    xs, consts = tuple(inputs[n_carry : n_carry + n_xs]), inputs[n_carry + n_xs :]

    def step(c: tuple[Any, ...], x: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        out = body(*c, *x, *consts)
        return tuple(out[:n_carry]), tuple(out[n_carry:])

    final, ys = jax.lax.scan(step, carry, xs, length=length, reverse=reverse)
    return (*final, *ys)


def cond(selector: Any, *operands: Any, branches: Sequence[Callable[..., Any]]) -> tuple[Any, ...]:
    """The branch ``selector`` picks (clamped to the branches, as jax.lax.switch)."""
    if isinstance(selector, jax.core.Tracer):
        fns = [lambda ops, f=f: tuple(f(*ops)) for f in branches]
        return tuple(jax.lax.switch(jnp.asarray(selector, jnp.int32), fns, tuple(operands)))
    index = min(max(int(selector), 0), len(branches) - 1)
    return tuple(branches[index](*operands))


KERNELS: dict[str, Callable[..., Any]] = {"scan": scan, "cond": cond}
