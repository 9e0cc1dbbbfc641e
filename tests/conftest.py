"""Shared fixtures for cross-package tests."""

from __future__ import annotations

import numpy as np
import pytest

import mithril as ml


def installed_backends() -> list[str]:
    return sorted(ml.plugins.backends())


@pytest.fixture
def numpy64():
    pytest.importorskip("mithril_numpy")
    return ml.NumpyBackend(dtype=ml.float64)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
