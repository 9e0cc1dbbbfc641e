"""Mithril's backend conformance suite (mithril.testing) run against TorchBackend.

Four configurations (``mithril_conformance_options``):

* ``eager``: every case in float32 and float64, the core's autodiff;
* ``torch-autodiff``: the gradient tests again with ``autodiff="torch"`` (torch.autograd);
* ``jit``: ``jit=True`` with the default torch.compile (inductor) on the CNN block, forward
  and gradients, float32: an inductor compile costs seconds per graph on a cold cache;
* ``jit-traced``: ``jit=True`` with ``torch.compile(backend="aot_eager")`` (dynamo and
  AOTAutograd, no code generation) on a representative subset of primitives, float32.

A fallback of torch.compile to eager execution fails the test.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from mithril.testing.conformance import *  # noqa: F403  (the suite: pytest collects its tests by name)
from mithril_torch import TorchBackend

#: MITHRIL_TORCH_TEST_DEVICE=cuda runs the suite on a GPU (see conftest.py)
DEVICE = os.environ.get("MITHRIL_TORCH_TEST_DEVICE", "cpu")

#: torch.compile falling back to eager would make the jit configuration test nothing
pytestmark = pytest.mark.filterwarnings("error:TorchBackend:RuntimeWarning")

#: case ids traced by dynamo (torch.compile with the aot_eager backend)
TRACED_SUBSET = frozenset(
    {
        "matmul-broadcast-batch",
        "conv2d-groups",
        "softmax-middle",
        "slice-negative-steps",
        "where-broadcast",
        "max_pool2d-k3s2p1",
        "gather_last-rank3",
        "block-mlp",
    }
)

CONFIGURATIONS = {
    "eager": {},
    "torch-autodiff": {"tests": {"gradient"}, "factory_options": {"autodiff": "torch"}},
    "jit": {"jit": True, "dtypes": ("float32",), "only": {"block-cnn"}, "tests": {"forward", "gradient"}},
    "jit-traced": {
        "jit": True,
        "dtypes": ("float32",),
        "only": TRACED_SUBSET,
        "factory_options": {"compile_options": {"backend": "aot_eager"}},
    },
}


@pytest.fixture(params=list(CONFIGURATIONS.values()), ids=list(CONFIGURATIONS))
def mithril_conformance_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.param


@pytest.fixture
def mithril_backend_factory(mithril_conformance_options: dict[str, Any]) -> Any:
    kw = mithril_conformance_options.get("factory_options", {})
    return lambda dtype: TorchBackend(dtype=dtype, device=DEVICE, **kw)
