"""memory_report()'s estimate against the measured peak, and against hand-written torch (issue 18).

For each model, one forward+backward call (output gradients of ones) is measured after a warm-up:
NumPy by tracemalloc, torch on CUDA by ``torch.cuda.max_memory_allocated`` above what the parameters,
inputs and cotangents already hold. The same call written by hand in torch.nn (``loss.backward``
with the same shapes) is measured the same way, so the last column is Mithril's peak over native.

    python benchmarks/bench_memory.py [--backends numpy,torch] [--out DIR]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from models import deep_mlp, seed_cnn

import mithril as ml

CASES: dict[str, tuple[Callable[[], ml.models.Model], list[int]]] = {
    "mlp-8x1024": (lambda: deep_mlp(8, 1024), [1024, 1024]),
    "seed-cnn": (seed_cnn, [256, 3, 32, 32]),
    "lstm-T64": (lambda: ml.models.LSTM(128, 256), [64, 64, 128]),  # input [T, N, I]
}


def cotangents(pm: Any, be: Any, params: Any, inputs: Any) -> dict[str, Any]:
    """Ones for every float output (what memory_report(gradients=True) assumes)."""
    outs = pm.evaluate(params, inputs)
    return {k: be.ones(*be.shape_of(v)) for k, v in outs.items() if be.kind_of(v) == "float"}


def numpy_peak(pm: Any, params: Any, inputs: Any, cot: Any) -> int:
    pm.evaluate(params, inputs, cot)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    pm.evaluate(params, inputs, cot)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return int(peak)


def cuda_peak(fn: Callable[[], Any]) -> int:
    import torch

    fn()
    torch.cuda.synchronize()
    gc.collect()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return int(peak)


def native_torch(name: str, params: dict[str, Any], x: Any, cot: Any) -> Callable[[], Any]:
    """The same forward+backward by hand: torch.nn.functional over leaf tensors, ``backward`` with ``cot``."""
    import torch
    import torch.nn.functional as F

    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}

    def mlp(h: Any) -> Any:
        i = 0
        while f"linear_{i}.weight" in leaves:
            h = F.linear(h, leaves[f"linear_{i}.weight"], leaves.get(f"linear_{i}.bias"))
            if f"linear_{i + 1}.weight" in leaves:
                h = torch.relu(h)
            i += 1
        return h

    if not name.startswith("mlp"):
        return lambda: None

    def step() -> Any:
        for v in leaves.values():
            v.grad = None
        out = mlp(x)
        out.backward(cot)
        grads = [v.grad for v in leaves.values()]
        for v in leaves.values():
            v.grad = None  # the caller holds them, as it holds Mithril's returned gradients
        return grads

    return step


def _register_in_process() -> None:
    """Backends found on sys.path but without installed entry points (a bare checkout on a GPU machine)."""
    import importlib
    import importlib.util

    known = set(ml.plugins.backends())
    for name in ("numpy", "torch"):
        if name not in known and importlib.util.find_spec(f"mithril_{name}") is not None:
            ml.plugins.register(importlib.import_module(f"mithril_{name}.plugin"), name=name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="numpy,torch")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    _register_in_process()
    rows: list[dict[str, Any]] = []
    for backend_name in args.backends.split(","):
        if backend_name == "torch":
            import torch

            if not torch.cuda.is_available():
                print("torch: no CUDA device, skipped (the CPU allocator keeps no peak statistics)")
                continue
            be: Any = ml.TorchBackend(dtype=ml.float32, device="cuda")
        else:
            be = ml.NumpyBackend(dtype=ml.float32)
        for name, (build, shape) in CASES.items():
            for ckpt in (False, True):
                pm = ml.compile(build(), be, shapes={"input": shape}, gradient_checkpointing=ckpt)
                params = pm.randomize_params(seed=0)
                x = be.randn(*shape)
                out_shape = pm.evaluate(params, {"input": x})["output"].shape
                cot = {"output": be.ones(*out_shape)}
                report = pm.memory_report()
                if backend_name == "numpy":
                    got = numpy_peak(pm, params, {"input": x}, cot)
                    native = None
                else:
                    got = cuda_peak(lambda: pm.evaluate(params, {"input": x}, cot))
                    hand = native_torch(name, params, x, cot["output"])
                    native = cuda_peak(hand) if name.startswith("mlp") and not ckpt else None
                est = report.peak_activations
                row = {
                    "backend": backend_name,
                    "model": name,
                    "checkpointing": ckpt,
                    "estimate_MiB": est / 2**20,
                    "measured_MiB": got / 2**20,
                    "measured/estimate": got / est,
                    "native_MiB": None if native is None else native / 2**20,
                    "mithril/native": None if not native else got / native,
                }
                rows.append(row)
                extra = "" if native is None else f"  native {native / 2**20:8.1f} MiB  ratio {got / native:.2f}"
                print(
                    f"{backend_name:6s} {name:11s} ckpt={ckpt!s:5s} estimate {est / 2**20:8.1f} MiB  "
                    f"measured {got / 2**20:8.1f} MiB  measured/estimate {got / est:.3f}{extra}",
                    flush=True,
                )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "memory.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
