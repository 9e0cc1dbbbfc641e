"""Kernels of the fused composites ``normalize`` and ``normalize_grad`` (mithril.primitives.normalization):
one expression each, which XLA fuses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array


def normalize(x: Array, *, axes: Sequence[int], eps: float) -> tuple[Array, Array, Array]:
    """``((x - mean) * rstd, mean, rstd)`` over ``axes`` (biased variance), statistics with the axes kept."""
    ax = tuple(axes)
    mean = jnp.mean(x, axis=ax, keepdims=True)
    centered = x - mean
    rstd = jax.lax.rsqrt(jnp.mean(centered * centered, axis=ax, keepdims=True) + eps)
    return centered * rstd, mean, rstd


def normalize_grad(x: Array, g: Array, mean: Array, rstd: Array, *, axes: Sequence[int]) -> Array:
    """Input gradient of :func:`normalize`'s output for the output gradient ``g``, from its statistics."""
    ax = tuple(axes)
    xhat = (x - mean) * rstd
    return rstd * (g - jnp.mean(g, axis=ax, keepdims=True) - xhat * jnp.mean(g * xhat, axis=ax, keepdims=True))


KERNELS: dict[str, Callable[..., Any]] = {"normalize": normalize, "normalize_grad": normalize_grad}
