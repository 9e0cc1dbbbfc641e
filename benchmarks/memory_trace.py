"""Per-line memory of one generated forward+backward call: what each line allocated and the
transient above it, measured (tracemalloc on NumPy, the CUDA allocator on torch), beside what
memory_report()'s walk counts for that node. A tool to find where an estimate is off.

    python benchmarks/memory_trace.py [--backend numpy|torch] [--model seed-cnn] [--batch 16] [--checkpointing]
"""

from __future__ import annotations

import argparse
import gc
import re
import sys
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_memory import CASES, _register_in_process, cotangents

import mithril as ml

MiB = 2**20


def _meters(backend: str) -> tuple[Callable[[], None], Callable[[], tuple[int, int]], Callable[[], None]]:
    """start, (current, peak since the last reset), reset-and-stop for the backend's allocator."""
    if backend == "numpy":
        return tracemalloc.start, tracemalloc.get_traced_memory, tracemalloc.reset_peak
    import torch

    def read() -> tuple[int, int]:
        return torch.cuda.memory_allocated(), torch.cuda.max_memory_allocated()

    return torch.cuda.reset_peak_memory_stats, read, torch.cuda.reset_peak_memory_stats


def trace(pm: Any, params: Any, inputs: Any, cot: Any, src: str, backend: str) -> dict[int, tuple[int, int, int]]:
    """line -> (bytes before, bytes after, peak while it ran), for the lines of the generated ``run``."""
    start, read, reset = _meters(backend)
    rec: dict[int, tuple[int, int, int]] = {}
    prev: list[Any] = [None]

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event in ("line", "return"):
            cur, peak = read()
            if prev[0] is not None:
                rec[prev[0][0]] = (prev[0][1], cur, peak)
            reset()
            prev[0] = (frame.f_lineno, read()[0])
        return local

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename == src else None

    gc.collect()
    start()
    sys.settrace(tracer)
    try:
        pm.evaluate(params, inputs, cot)
    finally:
        sys.settrace(None)
        if backend == "numpy":
            tracemalloc.stop()
    return rec


def _estimated_by_line(pm: Any, src: str) -> dict[int, tuple[int, int, int]]:
    """line of ``run`` -> (live before, output bytes, workspace) of its node in memory_report()'s walk."""
    from mithril.physical.memory import _call_key, float_bytes_of, walk

    last = pm._last
    steps = walk(
        last.graph, float_bytes_of(pm.backend), pm.backend.kernel_memory, getattr(last.executable, "inplace_plan", None)
    )[0]
    lines = Path(src).read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("def run("))
    calls = [i + 1 for i in range(start, len(lines)) if re.match(r"\s+[\w, ]+ = ki?_\w+\(", lines[i])]
    out: dict[int, tuple[int, int, int]] = {}
    seen: set[Any] = set()
    it = iter(calls)
    for node, step in zip(last.graph.nodes, steps):
        key = _call_key(node)
        if key in seen:
            continue
        seen.add(key)
        ln = next(it, None)
        if ln is None:
            break
        out[ln] = (step.live_before, step.output, step.workspace)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--model", default="seed-cnn", choices=sorted(CASES))
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--checkpointing", action="store_true")
    ap.add_argument("--min-kib", type=float, default=64.0, help="print lines that move at least this much")
    args = ap.parse_args()
    _register_in_process()
    be: Any = (
        ml.NumpyBackend(dtype=ml.float32)
        if args.backend == "numpy"
        else ml.TorchBackend(dtype=ml.float32, device="cuda")
    )
    build, shape = CASES[args.model]
    shape = [args.batch or shape[0], *shape[1:]]
    src = str(Path(tempfile.mkdtemp()) / "generated.py")
    pm = ml.compile(build(), be, shapes={"input": shape}, gradient_checkpointing=args.checkpointing, source_path=src)
    params = pm.randomize_params(seed=0)
    x = {"input": be.randn(*shape)}
    cot = cotangents(pm, be, params, x)
    pm.evaluate(params, x, cot)
    report = pm.memory_report()
    estimated = _estimated_by_line(pm, src)
    rec = trace(pm, params, x, cot, src, args.backend)
    lines = Path(src).read_text().splitlines()
    base = min(b for b, _, _ in rec.values())
    top = 0
    for ln in sorted(rec):
        before, after, peak = rec[ln]
        top = max(top, peak - base)
        text = lines[ln - 1].strip()
        if max(peak - max(before, after), abs(after - before)) < args.min_kib * 1024:
            continue
        est = estimated.get(ln)
        print(
            f"{ln:4d} live {(before - base) / MiB:8.2f}  +{(after - before) / MiB:7.2f}  "
            f"transient {(peak - max(before, after)) / MiB:7.2f}"
            + (f"  (est {est[0] / MiB:8.2f} +{est[1] / MiB:7.2f} ws {est[2] / MiB:7.2f})" if est else " " * 37)
            + f"  | {text[:100]}"
        )
    print(f"measured peak above the arguments {top / MiB:.2f} MiB; estimate {report.peak_activations / MiB:.2f} MiB")
    print(report)


if __name__ == "__main__":
    main()
