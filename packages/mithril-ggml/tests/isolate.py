"""Run a test helper in a fresh interpreter, so that a ggml abort fails one test, not the session."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_HERE = Path(__file__).resolve().parent
_PATHS = [str(_HERE), str(_HERE.parents[1] / "mithril-core" / "src"), str(_HERE.parents[1] / "mithril-ggml" / "src")]

_CHILD = """
import importlib, pickle, sys
sys.path[:0] = {paths!r}
with open(sys.argv[1], "rb") as f:
    module, name, args = pickle.load(f)
result = getattr(importlib.import_module(module), name)(*args)
with open(sys.argv[2], "wb") as f:
    pickle.dump(result, f)
"""


def run_isolated(func: Callable[..., Any], *args: Any, timeout: float = 300) -> Any:
    """``func(*args)`` in a child Python; ``func`` must be a module-level function of a test helper."""
    with tempfile.TemporaryDirectory() as d:
        arg_file, out_file = os.path.join(d, "args.pkl"), os.path.join(d, "out.pkl")
        with open(arg_file, "wb") as f:
            pickle.dump((func.__module__, func.__name__, args), f)
        env = dict(os.environ, GGML_NO_BACKTRACE="1")
        proc = subprocess.run([sys.executable, "-c", _CHILD.format(paths=_PATHS), arg_file, out_file],
                              capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0:
            pytest.fail(f"child process died with status {proc.returncode}:\n{proc.stderr[-3000:]}")
        with open(out_file, "rb") as f:
            return pickle.load(f)
