"""Mithril's backend conformance suite (mithril.testing) run against NumpyBackend, float32 and float64."""

from __future__ import annotations

from typing import Any

import pytest

from mithril.testing.conformance import *  # noqa: F401,F403
from mithril_numpy import NumpyBackend


@pytest.fixture
def mithril_backend_factory() -> Any:
    return lambda dtype: NumpyBackend(dtype=dtype)
