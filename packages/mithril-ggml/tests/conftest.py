"""Test helpers: build one-node graphs with concrete shapes, NumPy references."""

from __future__ import annotations

import os as _os
import sys as _sys

# test helper modules beside this file (pytest runs with --import-mode=importlib)
_sys.path.insert(0, _os.path.dirname(__file__))


import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
for _p in (_ROOT / "mithril-core" / "src", _ROOT / "mithril-ggml" / "src"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import numpy as np
import pytest

os.environ.setdefault("GGML_NO_BACKTRACE", "1")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
