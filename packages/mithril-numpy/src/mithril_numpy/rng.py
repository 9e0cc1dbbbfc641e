"""Random primitives: the per-node key and the kernels that draw from it.

A key is a fresh :class:`numpy.random.Generator` seeded with ``(seed, stream)``
(``SeedSequence`` mixes the two), so every node of a call draws its own stream and
the same seed gives the same draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def random_key(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng((int(seed), int(stream)))


def bernoulli(key: np.random.Generator, like: Any, *, p: float) -> np.ndarray:
    return key.random(np.shape(like)) < p


KERNELS: dict[str, Callable[..., Any]] = {"bernoulli": bernoulli}

__all__ = ["KERNELS", "random_key"]
