"""Where the time of building and compiling the ``+=`` MLP goes: CPU time of each compile phase.

    .nox/tests/bin/python benchmarks/profile_build.py [layers] [--cprofile]

Builds and compiles ``deep_mlp(layers, 64)`` (NumPy backend) six times, and prints the median run's
build and compile CPU time (``process_time``) with the compile split into its phases: flatten, the
shape solve, the concrete copy, the passes, code generation and Python's ``compile()`` of the
generated source. A phase's time excludes the phases it calls. ``--cprofile`` prints cProfile's top
functions of one more build + compile instead (its overhead inflates small functions).
"""

from __future__ import annotations

import builtins
import cProfile
import gc
import pstats
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import models as M

import mithril as ml
from mithril.codegen import python_source
from mithril.ir.passes import fuse, shape_inference, simplify
from mithril.physical import model as physical_model
from mithril.physical import pipeline

_acc: defaultdict[str, float] = defaultdict(float)
_stack: list[float] = []


def _timed(owner: Any, name: str, label: str) -> None:
    """Replace ``owner.name`` by a wrapper adding its CPU time (less that of timed callees) to ``label``."""
    fn: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.process_time()
        _stack.append(0.0)
        try:
            return fn(*args, **kwargs)
        finally:
            dt = time.process_time() - t0
            _acc[label] += dt - _stack.pop()
            if _stack:
                _stack[-1] += dt

    setattr(owner, name, wrapper)


def _instrument() -> None:
    _timed(physical_model, "flatten", "flatten")
    _timed(shape_inference, "solve", "shape solve")
    _timed(pipeline, "concretize", "concrete copy")
    _timed(pipeline, "expand", "expand")
    for name in ("prune", "cse", "remove_identities", "fold_shape_constants"):
        _timed(simplify, name, f"simplify.{name}")
    for name in ("simplify_transposes", "fuse_linear", "fuse_pool_indices", "fuse_conv_backward"):
        _timed(fuse, name, f"fuse.{name}")
    _timed(python_source, "generate_source", "generate_source")
    _timed(builtins, "compile", "Python compile()")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 1000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        backend = ml.backend("numpy", dtype=ml.float32)
    shapes = {"input": [8, 64]}
    if "--cprofile" in sys.argv:
        ml.compile(M.deep_mlp(n, 64), backend, shapes=shapes)
        gc.collect()
        prof = cProfile.Profile()
        prof.enable()
        ml.compile(M.deep_mlp(n, 64), backend, shapes=shapes)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return
    _instrument()
    runs: list[tuple[float, float, dict[str, float]]] = []
    for r in range(6):
        _acc.clear()
        gc.collect()
        t0 = time.process_time()
        model = M.deep_mlp(n, 64)
        t1 = time.process_time()
        ml.compile(model, backend, shapes=shapes)
        t2 = time.process_time()
        if r:  # the first run warms up
            runs.append((t1 - t0, t2 - t1, dict(_acc)))
    runs.sort(key=lambda x: x[0] + x[1])
    build, comp, phases = runs[len(runs) // 2]
    print(f"{n} layers, CPU ms (median of {len(runs)}): build {build * 1e3:.0f}, compile {comp * 1e3:.0f}")
    for k, v in sorted(phases.items(), key=lambda kv: -kv[1]):
        if v >= 5e-4:
            print(f"  {k:26s} {v * 1e3:6.1f}")
    print(f"  {'rest of compile':26s} {(comp - sum(phases.values())) * 1e3:6.1f}")


if __name__ == "__main__":
    main()
