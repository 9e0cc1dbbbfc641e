"""Random primitives: the per-node key and the kernels that draw from it.

The call's seed is a PRNG key split from the backend's key; a node's key is
``jax.random.fold_in(seed, stream)``. Under ``jax.jit`` the seed is a traced
argument: a new seed reuses the compiled function.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax


def random_key(seed: jax.Array, stream: int) -> jax.Array:
    return jax.random.fold_in(seed, stream)


@partial(jax.jit, static_argnames=("shape", "p"))
def _bernoulli(key: jax.Array, *, shape: tuple[int, ...], p: float) -> jax.Array:
    # drawn flat: XLA compiles one sampler per size rather than per shape
    return jax.random.bernoulli(key, p, (math.prod(shape),)).reshape(shape)


def bernoulli(key: jax.Array, like: jax.Array, *, p: float) -> jax.Array:
    return _bernoulli(key, shape=tuple(like.shape), p=p)


KERNELS: dict[str, Any] = {"bernoulli": bernoulli}

__all__ = ["KERNELS", "random_key"]
