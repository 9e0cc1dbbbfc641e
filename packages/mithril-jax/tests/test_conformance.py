"""Mithril's backend conformance suite (mithril.testing) run against JaxBackend.

Two configurations (``mithril_conformance_options``): ``eager``, every case in
float32 and float64; ``jit``, a representative subset with ``jit=True``
(jax.jit) in float32 only, to keep the run short.
"""

from __future__ import annotations

from typing import Any

import pytest

from mithril.testing.conformance import *  # noqa: F403  (the suite: pytest collects its tests by name)
from mithril_jax import JaxBackend

#: case ids and block case ids compiled with jax.jit
JIT_SUBSET = frozenset(
    {
        "matmul-broadcast-batch",
        "conv2d-groups",
        "softmax-middle",
        "slice-negative-steps",
        "where-broadcast",
        "max_pool2d-k3s2p1",
        "block-cnn",
    }
)

CONFIGURATIONS = {
    "eager": {},
    "jit": {"jit": True, "dtypes": ("float32",), "only": JIT_SUBSET | {"conv2d_input_grad-uneven"}},
}


@pytest.fixture(params=list(CONFIGURATIONS.values()), ids=list(CONFIGURATIONS))
def mithril_conformance_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.param


@pytest.fixture
def mithril_backend_factory() -> Any:
    return lambda dtype: JaxBackend(dtype=dtype, device="cpu")
