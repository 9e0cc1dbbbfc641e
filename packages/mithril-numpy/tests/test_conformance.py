"""Mithril's backend conformance suite (mithril.testing) run against NumpyBackend.

Two configurations (``mithril_conformance_options``): ``eager``, every case in
float32 and float64; ``checkpointing``, the block gradients again compiled with
``gradient_checkpointing=True`` (the backward pass recomputes activations).
"""

from __future__ import annotations

from typing import Any

import pytest

from mithril.testing.conformance import *  # noqa: F403  (the suite: pytest collects its tests by name)
from mithril_numpy import NumpyBackend

CONFIGURATIONS = {
    "eager": {},
    "checkpointing": {
        "compile_options": {"gradient_checkpointing": True},
        "tests": {"gradient"},
        "only": {"block-conv2d", "block-batchnorm2d", "block-mlp", "block-cnn"},
    },
}


@pytest.fixture(params=list(CONFIGURATIONS.values()), ids=list(CONFIGURATIONS))
def mithril_conformance_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.param


@pytest.fixture
def mithril_backend_factory() -> Any:
    return lambda dtype: NumpyBackend(dtype=dtype)
