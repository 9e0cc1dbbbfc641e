from __future__ import annotations

import numpy as np
import pytest

from mithril.dtypes import DType
from mithril_numpy.backend import NumpyBackend


@pytest.fixture(scope="session")
def k64():
    """Kernels of a float64 backend."""
    return NumpyBackend(DType.float64).core_kernels()


@pytest.fixture(scope="session")
def k32():
    """Kernels of a float32 backend."""
    return NumpyBackend(DType.float32).core_kernels()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
