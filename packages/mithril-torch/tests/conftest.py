"""Shared fixtures: a TorchBackend per float dtype and helpers to compare with NumPy oracles."""

from __future__ import annotations

import os as _os
import sys as _sys

# test helper modules beside this file (pytest runs with --import-mode=importlib)
_sys.path.insert(0, _os.path.dirname(__file__))


import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mithril.dtypes import DType
from mithril_torch import TorchBackend

# the tests import their NumPy oracles (torch_oracles.py) by name, whatever pytest's import mode
sys.path.insert(0, str(Path(__file__).parent))

#: device of the ``backend`` fixture; set MITHRIL_TORCH_TEST_DEVICE=cuda to run the kernel tests on a GPU
DEVICE = os.environ.get("MITHRIL_TORCH_TEST_DEVICE", "cpu")

#: (rtol, atol) per backend dtype for comparisons with float64 oracles
TOLERANCES = {DType.float32: (2e-5, 2e-6), DType.float64: (1e-12, 1e-13)}


@pytest.fixture(params=[DType.float32, DType.float64], ids=["float32", "float64"])
def backend(request: pytest.FixtureRequest) -> TorchBackend:
    return TorchBackend(dtype=request.param, device=DEVICE)


@pytest.fixture
def kernels(backend: TorchBackend) -> dict[str, Any]:
    return dict(backend.core_kernels())


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


class Case:
    """Moves NumPy float64 data into the backend and checks results against oracles."""

    def __init__(self, backend: TorchBackend) -> None:
        self.backend = backend

    def put(self, data: Any) -> tuple[torch.Tensor, np.ndarray]:
        """The tensor, and the float64 NumPy view of exactly what it holds (after rounding)."""
        t = self.backend.array(np.asarray(data))
        ref = self.backend.to_numpy(t)
        return t, ref.astype(np.float64) if ref.dtype.kind == "f" else ref

    def check(self, got: torch.Tensor, want: Any, *, scale: float = 1.0) -> None:
        assert isinstance(got, torch.Tensor)
        want = np.asarray(want)
        assert tuple(got.shape) == want.shape, (tuple(got.shape), want.shape)
        assert got.device == self.backend.torch_device
        if want.dtype.kind == "f":
            assert got.dtype == self.backend.torch_dtype, got.dtype
            rtol, atol = TOLERANCES[self.backend.dtype]
            np.testing.assert_allclose(self.backend.to_numpy(got), want, rtol=rtol, atol=atol * scale)
        else:
            np.testing.assert_array_equal(self.backend.to_numpy(got), want)
            assert got.dtype == {"b": torch.bool, "i": torch.int64}[want.dtype.kind], got.dtype


@pytest.fixture
def case(backend: TorchBackend) -> Case:
    return Case(backend)
