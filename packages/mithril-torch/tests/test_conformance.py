"""Mithril's backend conformance suite (mithril.testing) run against TorchBackend.

Three configurations (``mithril_conformance_options``):

* ``eager``: every case in float32 and float64, the core's autodiff;
* ``torch-autodiff``: the gradient tests again with ``autodiff="torch"`` (torch.autograd);
* ``jit``: a representative subset with ``jit=True`` (torch.compile) in float32 only;
  compiling every case would take minutes. A fallback to eager execution fails the test.
"""

from __future__ import annotations

from typing import Any

import pytest

from mithril.testing.conformance import *  # noqa: F401,F403
from mithril_torch import TorchBackend

#: torch.compile falling back to eager would make the jit configuration test nothing
pytestmark = pytest.mark.filterwarnings("error:TorchBackend:RuntimeWarning")

#: case ids and block case ids compiled with torch.compile
JIT_SUBSET = frozenset({
    "matmul-broadcast-batch", "conv2d-groups", "softmax-middle", "slice-negative-steps", "where-broadcast",
    "max_pool2d-k3s2p1", "block-cnn",
})

CONFIGURATIONS = {
    "eager": {},
    "torch-autodiff": {"tests": {"gradient"}, "factory_options": {"autodiff": "torch"}},
    "jit": {"jit": True, "dtypes": ("float32",), "only": JIT_SUBSET},
}


@pytest.fixture(params=list(CONFIGURATIONS.values()), ids=list(CONFIGURATIONS))
def mithril_conformance_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.param


@pytest.fixture
def mithril_backend_factory(mithril_conformance_options: dict[str, Any]) -> Any:
    kw = mithril_conformance_options.get("factory_options", {})
    return lambda dtype: TorchBackend(dtype=dtype, device="cpu", **kw)
