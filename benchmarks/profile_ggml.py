"""Where a GGML forward call spends its time: each node of the ggml graph timed alone.

    python benchmarks/profile_ggml.py --model seed_cnn --batch 64 [--quantize int8] [--threads 1]

Each node is run by itself through ``ggml_graph_view(graph, i, i + 1)`` (its inputs are already
computed), best of 3 rounds; nodes of the same op are summed. The whole graph and
``pm.evaluate`` are timed too: the difference to ``evaluate`` is the Python side of a call. The
evidence behind docs/performance.md, section "GGML batched inference".
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _best(fn: Callable[[], Any], target_s: float = 0.2) -> float:
    fn()
    t0 = time.perf_counter()
    fn()
    k = max(1, int(target_s / max(time.perf_counter() - t0, 1e-7)))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        best = min(best, (time.perf_counter() - t0) / k)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("seed_mlp", "seed_cnn"), default="seed_cnn")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--quantize", choices=("int8", "int4"), default=None)
    ap.add_argument("--threads", type=int, default=1, help="ggml and BLAS threads (default 1)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))

    import models as M
    import numpy as np
    from ggml import ggml as g

    import mithril as ml

    warnings.simplefilter("ignore", RuntimeWarning)
    model, shape = (
        (M.seed_mlp(), (args.batch, 20)) if args.model == "seed_mlp" else (M.seed_cnn(), (args.batch, 3, 32, 32))
    )
    npm = ml.compile(model, ml.NumpyBackend(dtype=ml.float32), shapes={"input": list(shape)}, static_inference=True)
    params = npm.randomize_params(seed=0)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    be = ml.GGMLBackend(quantize=args.quantize, n_threads=args.threads)
    pm = ml.compile(model, be, shapes={"input": list(shape)}, static_inference=True)
    pm.evaluate(params, {"input": x})
    exe = getattr(pm, "executable", None) or pm._last.executable
    plan = exe._forward
    gf = plan.cgraph
    work = (ctypes.c_uint8 * max(int(plan.cplan.work_size), 1))()
    per_op: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for i in range(g.ggml_graph_n_nodes(gf)):
        view = ctypes.pointer(g.ggml_graph_view(gf, i, i + 1))
        cplan = g.ggml_graph_plan(view, args.threads, None)
        cplan.work_data = ctypes.cast(work, ctypes.POINTER(ctypes.c_uint8))
        node = g.ggml_graph_node(gf, i)
        op = g.ggml_op_name(node.contents.op).decode()
        if op == "CUSTOM":
            op = "CUSTOM (BLAS product)"
        per_op[op] += _best(lambda view=view, cplan=cplan: g.ggml_graph_compute(view, ctypes.byref(cplan)), 0.05)
        count[op] += 1
    whole = _best(plan.compute)
    call = _best(lambda: pm.evaluate(params, {"input": x}))
    total = sum(per_op.values())
    print(f"{args.model} B={args.batch} quantize={args.quantize} threads={args.threads}")
    for op, t in sorted(per_op.items(), key=lambda kv: -kv[1]):
        print(f"  {op:<24} x{count[op]:<3} {t * 1e3:9.3f} ms  {100 * t / total:5.1f}%")
    print(f"  nodes alone {total * 1e3:.3f} ms; whole graph {whole * 1e3:.3f} ms; evaluate {call * 1e3:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
