"""Shared fixtures for cross-package tests.

Mithril is imported inside the fixtures, not here: ``nox -s wheels`` runs
tests/test_distribution.py in an environment where Mithril is not installed (it installs
it from the wheels it builds, into environments of its own).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["mithril-core", "mithril-numpy", "mithril-torch", "mithril-jax", "mithril-ggml"]


def installed_backends() -> list[str]:
    import mithril as ml

    return sorted(ml.plugins.backends())


@pytest.fixture
def numpy64():
    pytest.importorskip("mithril_numpy")
    import mithril as ml

    return ml.NumpyBackend(dtype=ml.float64)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of wheels of every package, built once per test session and shared by every test
    that installs Mithril from wheels (``pip wheel --no-deps``; without build isolation where
    hatchling is installed, which saves one build environment per package)."""
    dist = tmp_path_factory.mktemp("dist")
    pkgs = [str(ROOT / "packages" / p) for p in PACKAGES if (ROOT / "packages" / p / "pyproject.toml").exists()]
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(dist), *pkgs],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, f"pip wheel failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return dist
