"""Kernels of the fused composites ``normalize`` and ``normalize_grad`` (mithril.primitives.normalization):
one expression each, which XLA fuses."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import Array


def _stats(x: Array, axes: tuple[int, ...], eps: float) -> tuple[Array, Array]:
    centered = x - jnp.mean(x, axis=axes, keepdims=True)
    return centered, jax.lax.rsqrt(jnp.mean(centered * centered, axis=axes, keepdims=True) + eps)


def normalize(x: Array, *, axes: Sequence[int], eps: float) -> Array:
    """``(x - mean) / sqrt(var + eps)`` over ``axes`` (biased variance)."""
    centered, rstd = _stats(x, tuple(axes), eps)
    return centered * rstd


def normalize_grad(x: Array, g: Array, *, axes: Sequence[int], eps: float) -> Array:
    """Input gradient of :func:`normalize` for the output gradient ``g``."""
    ax = tuple(axes)
    centered, rstd = _stats(x, ax, eps)
    xhat = centered * rstd
    return rstd * (g - jnp.mean(g, axis=ax, keepdims=True) - xhat * jnp.mean(g * xhat, axis=ax, keepdims=True))


KERNELS = {"normalize": normalize, "normalize_grad": normalize_grad}
