"""Run a test helper in a fresh interpreter, so that a ggml abort fails one test, not the session.

Arguments and results cross the process boundary as JSON (arrays as base64 bytes with their dtype
and shape; tuples and dicts tagged), never pickled: the project loads no pickle anywhere.
"""

from __future__ import annotations

import os
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
import importlib, sys
sys.path[:0] = {paths!r}
from isolate import dump, load
module, name, args = load(sys.argv[1])
result = getattr(importlib.import_module(module), name)(*args)
dump(result, sys.argv[2])
"""


def _encode(obj: Any) -> Any:
    import base64

    import numpy as np

    if isinstance(obj, (np.ndarray, np.generic)):
        a = np.ascontiguousarray(obj)
        return {
            "__array__": base64.b64encode(a.tobytes()).decode(),
            "dtype": a.dtype.str,
            "shape": list(a.shape),
            "scalar": isinstance(obj, np.generic),
        }
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k), _encode(v)] for k, v in obj.items()]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"isolate: cannot send a {type(obj).__name__} between processes")


def _decode(obj: Any) -> Any:
    import base64

    import numpy as np

    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    if isinstance(obj, dict):
        if "__array__" in obj:
            a = np.frombuffer(base64.b64decode(obj["__array__"]), dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
            return a[()] if obj["scalar"] else a.copy()
        if "__tuple__" in obj:
            return tuple(_decode(v) for v in obj["__tuple__"])
        return {_decode(k): _decode(v) for k, v in obj["__dict__"]}
    return obj


def dump(obj: Any, path: str) -> None:
    import json

    with open(path, "w") as f:
        json.dump(_encode(obj), f)


def load(path: str) -> Any:
    import json

    with open(path) as f:
        return _decode(json.load(f))


def run_isolated(func: Callable[..., Any], *args: Any, timeout: float = 300) -> Any:
    """``func(*args)`` in a child Python; ``func`` must be a module-level function of a test helper."""
    with tempfile.TemporaryDirectory() as d:
        arg_file, out_file = os.path.join(d, "args.json"), os.path.join(d, "out.json")
        dump((func.__module__, func.__name__, args), arg_file)
        env = dict(os.environ, GGML_NO_BACKTRACE="1")
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD.format(paths=_PATHS), arg_file, out_file],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if proc.returncode != 0:
            pytest.fail(f"child process died with status {proc.returncode}:\n{proc.stderr[-3000:]}")
        return load(out_file)
