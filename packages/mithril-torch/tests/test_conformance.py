"""Mithril's backend conformance suite (mithril.testing) run against TorchBackend.

Every case eagerly in float32 and float64, and a representative subset with
``jit=True`` (torch.compile) in float32 only: compiling every case would take minutes.
"""

from __future__ import annotations

from typing import Any

import pytest

from mithril.testing.conformance import *  # noqa: F401,F403
from mithril_torch import TorchBackend

#: primitives and block cases compiled with torch.compile
JIT_SUBSET = frozenset({
    "matmul-broadcast-batch", "conv2d-groups", "softmax-middle", "slice-negative-steps", "where-broadcast",
    "max_pool2d-k3s2p1", "block-cnn",
})


@pytest.fixture
def mithril_backend_factory() -> Any:
    return lambda dtype: TorchBackend(dtype=dtype, device="cpu")


@pytest.fixture(params=[{}, {"jit": True, "dtypes": ("float32",), "only": JIT_SUBSET}], ids=["eager", "jit"])
def mithril_conformance_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.param
