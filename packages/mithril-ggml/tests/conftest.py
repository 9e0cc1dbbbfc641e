"""Test helpers: build one-node graphs with concrete shapes, NumPy references."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

# test helper modules beside this file (pytest runs with --import-mode=importlib)
sys.path.insert(0, os.path.dirname(__file__))

_ROOT = Path(__file__).resolve().parents[2]
for _p in (_ROOT / "mithril-core" / "src", _ROOT / "mithril-ggml" / "src"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

os.environ.setdefault("GGML_NO_BACKTRACE", "1")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
