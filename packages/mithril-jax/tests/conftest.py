"""Shared fixtures: a JaxBackend per float dtype and helpers to compare with oracles."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from mithril.dtypes import DType
from mithril_jax import JaxBackend

TOL = {DType.float32: 2e-5, DType.float64: 1e-12}
#: the kernel tests' device; e.g. MITHRIL_JAX_TEST_DEVICE=gpu (with JAX_DEFAULT_MATMUL_PRECISION=highest,
#: since XLA's default float32 precision on GPUs is TF32)
DEVICE = os.environ.get("MITHRIL_JAX_TEST_DEVICE", "cpu")


@pytest.fixture(params=[DType.float32, DType.float64], ids=["float32", "float64"])
def backend(request: pytest.FixtureRequest) -> JaxBackend:
    return JaxBackend(dtype=request.param, device=DEVICE)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


class Harness:
    """Feeds float64 NumPy data to a backend and checks kernels against float64 oracles."""

    def __init__(self, backend: JaxBackend, rng: np.random.Generator) -> None:
        self.b = backend
        self.rng = rng

    def data(self, *shape: int, low: float | None = None, high: float | None = None) -> tuple[Any, np.ndarray]:
        """(backend array, the same values as float64 NumPy) of normal or uniform samples."""
        raw = self.rng.standard_normal(shape) if low is None else self.rng.uniform(low, high, shape)
        x = self.b.array(raw)
        return x, self.b.to_numpy(x).astype(np.float64)

    def run(self, name: str, *inputs: Any, **attrs: Any) -> Any:
        return self.b.kernel(name)(*inputs, **attrs)

    def check(self, got: Any, expected: Any, scale: float = 1.0) -> None:
        got_np = self.b.to_numpy(got)
        expected = np.asarray(expected)
        assert got_np.shape == expected.shape, (got_np.shape, expected.shape)
        if expected.dtype.kind == "f":
            assert got_np.dtype == self.b.dtype.numpy, (got_np.dtype, self.b.dtype)
            tol = TOL[self.b.dtype] * scale
            np.testing.assert_allclose(got_np.astype(np.float64), expected, rtol=tol, atol=tol)
        else:
            np.testing.assert_array_equal(got_np, expected)


@pytest.fixture
def h(backend: JaxBackend, rng: np.random.Generator) -> Harness:
    return Harness(backend, rng)
