"""Suite ``compile``: time to build a logical model and to compile it.

* ``build``: constructing the logical model (``Model()``, ``+=``/``|=``, shape
  inference while connecting).
* ``compile``: ``ml.compile(model, backend, shapes=...)`` (flatten, shape
  solving, passes, code generation for the forward graph, lowering). A backend
  instance is created before timing (plugin loading is not counted).
* ``total``: build + compile of the same repetition.

Each repetition builds a fresh model. Peak memory is ``tracemalloc``'s peak over
build + compile, measured in a separate repetition (tracemalloc slows Python down).
Growth per doubling: total(n) / total(n/2) between consecutive sizes.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import models as M
from harness import Stats


def _backend(name: str) -> Any:
    import mithril as ml

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return ml.backend(name, dtype=ml.float32)


def _one(build: Callable[[], Any], shapes: dict[str, list[int]], backend: Any) -> tuple[float, float]:
    import mithril as ml

    gc.collect()
    t0 = time.perf_counter()
    model = build()
    t1 = time.perf_counter()
    ml.compile(model, backend, shapes=shapes)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def _peak(build: Callable[[], Any], shapes: dict[str, list[int]], backend: Any) -> int:
    import mithril as ml

    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        pm = ml.compile(build(), backend, shapes=shapes)
        _, peak = tracemalloc.get_traced_memory()
        del pm
    finally:
        tracemalloc.stop()
    return peak - before


def cases(level: str) -> list[tuple[str, str, int, Callable[[], Any], dict[str, list[int]]]]:
    """(family, case, size, build, shapes)."""
    if level == "smoke":
        mlp_sizes, gpt_sizes = [5, 10], [1, 2]
        gcfg = dict(d_model=64, n_heads=4, seq_len=16, vocab=64)
    elif level == "quick":
        mlp_sizes, gpt_sizes = [50, 100], [2, 12]
        gcfg = {}
    else:
        mlp_sizes, gpt_sizes = [50, 100, 200, 400], [2, 12, 24, 48]
        gcfg = {}
    out: list[tuple[str, str, int, Callable[[], Any], dict[str, list[int]]]] = []
    for n in mlp_sizes:
        out.append(
            ("mlp", f"MLP {n} layers (Linear 32 + Relu, +=)", n, lambda n=n: M.deep_mlp(n, 32), {"input": [8, 32]})
        )
    for n in gpt_sizes:
        cfg = M.GPTConfig(n_layers=n, **gcfg)
        out.append(
            (
                "gpt",
                f"GPT {n} layers (d={cfg.d_model}, {cfg.n_heads} heads, T={cfg.seq_len})",
                n,
                lambda cfg=cfg: M.gpt(cfg),
                {"input": M.gpt_input_shape(cfg)},
            )
        )
    return out


def run(
    level: str, *, reps: int, backends: Sequence[str], memory: bool, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    numpy_be = _backend("numpy")
    prev: dict[str, float] = {}
    for family, title, size, build, shapes in cases(level):
        _one(build, shapes, numpy_be)  # warm-up (imports, caches)
        b, c, t = [], [], []
        for _ in range(reps):
            bt, ct = _one(build, shapes, numpy_be)
            b.append(bt)
            c.append(ct)
            t.append(bt + ct)
        total = Stats.of(t)
        row: dict[str, Any] = dict(
            suite="compile",
            family=family,
            case=title,
            size=size,
            backend="numpy",
            build_s=Stats.of(b).as_dict(),
            compile_s=Stats.of(c).as_dict(),
            total_s=total.as_dict(),
            peak_mem_bytes=_peak(build, shapes, numpy_be) if memory else None,
            mem_method="tracemalloc",
        )
        if family in prev:
            row["growth_vs_previous"] = total.median / prev[family]
        prev[family] = total.median
        rows.append(row)
        log(f"compile: {title}: build {Stats.of(b).median:.3f}s compile {Stats.of(c).median:.3f}s")
    # the 12-layer GPT (or the largest smoke one) on every backend
    gpt_cases = [cse for cse in cases(level) if cse[0] == "gpt"]
    ref = next((cse for cse in gpt_cases if cse[2] == 12), gpt_cases[-1])
    for name in backends:
        if name == "numpy":
            continue
        try:
            be = _backend(name)
            _one(ref[3], ref[4], be)
            b, c, t = [], [], []
            for _ in range(reps):
                bt, ct = _one(ref[3], ref[4], be)
                b.append(bt)
                c.append(ct)
                t.append(bt + ct)
            rows.append(
                dict(
                    suite="compile",
                    family="gpt-backend",
                    case=ref[1],
                    size=ref[2],
                    backend=name,
                    build_s=Stats.of(b).as_dict(),
                    compile_s=Stats.of(c).as_dict(),
                    total_s=Stats.of(t).as_dict(),
                    peak_mem_bytes=None,
                    mem_method="none",
                )
            )
            log(f"compile: {ref[1]} on {name}: compile {Stats.of(c).median:.3f}s")
        except Exception as e:
            rows.append(
                dict(
                    suite="compile",
                    family="gpt-backend",
                    case=ref[1],
                    size=ref[2],
                    backend=name,
                    error=f"{type(e).__name__}: {str(e)[:300]}",
                )
            )
    return rows
