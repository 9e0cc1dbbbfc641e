"""memory_report()'s estimate against the measured peak, and against hand-written torch (issue 18).

For each model, one forward+backward call (output gradients of ones) is measured after a warm-up:
NumPy by tracemalloc, torch on CUDA by ``torch.cuda.max_memory_allocated`` above what the parameters,
inputs and cotangents already hold. The same call written by hand in torch.nn (``loss.backward``
with the same shapes) is measured the same way, so the last column is Mithril's peak over native; on
NumPy the MLP's native is the same call by hand in NumPy. Every case runs with the generated code's
in-place buffer reuse (mithril.codegen.inplace) and without it (``MITHRIL_INPLACE=0``); ``--inplace on``
or ``off`` runs one of them.

    python benchmarks/bench_memory.py [--backends numpy,torch] [--inplace both|on|off] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import tracemalloc
from collections.abc import Callable, Iterator
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


def numpy_fn_peak(fn: Callable[[], Any]) -> int:
    """tracemalloc's peak of one call of ``fn`` after a warm-up, above what was allocated before it."""
    fn()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    out = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    del out
    return int(peak)


def native_numpy(name: str, params: dict[str, Any], x: Any, cot: Any) -> Callable[[], Any] | None:
    """The MLP's forward+backward written by hand in NumPy (activations kept, the relu mask applied in place)."""
    import numpy as np

    if not name.startswith("mlp"):
        return None
    layers = []
    while f"linear_{len(layers)}.weight" in params:
        i = len(layers)
        layers.append((params[f"linear_{i}.weight"], params[f"linear_{i}.bias"]))

    def step() -> Any:
        acts = [x]
        for i, (w, b) in enumerate(layers):
            h = acts[-1] @ w.T
            h += b
            if i + 1 < len(layers):
                np.maximum(h, 0, out=h)
            acts.append(h)
        g, grads = cot, []
        for i in reversed(range(len(layers))):
            w, _ = layers[i]
            grads.append((g.T @ acts[i], g.sum(axis=0)))
            if i:
                g = g @ w
                g *= acts[i] > 0
            acts.pop()
        return grads

    return step


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


@contextlib.contextmanager
def inplace_reuse(on: bool) -> Iterator[None]:
    """Compile and run with in-place buffer reuse on or off (``MITHRIL_INPLACE``, read when code is generated)."""
    old = os.environ.get("MITHRIL_INPLACE")
    os.environ["MITHRIL_INPLACE"] = "1" if on else "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["MITHRIL_INPLACE"]
        else:
            os.environ["MITHRIL_INPLACE"] = old


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
    ap.add_argument(
        "--inplace",
        choices=("both", "on", "off"),
        default="both",
        help="in-place buffer reuse in the generated code (MITHRIL_INPLACE): measure with it, without it, or both",
    )
    args = ap.parse_args()
    reuse_modes = {"both": (True, False), "on": (True,), "off": (False,)}[args.inplace]
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
            for ckpt, reuse in ((c, r) for c in (False, True) for r in reuse_modes):
                with inplace_reuse(reuse):
                    pm = ml.compile(build(), be, shapes={"input": shape}, gradient_checkpointing=ckpt)
                    params = pm.randomize_params(seed=0)
                    x = be.randn(*shape)
                    try:
                        cot = cotangents(pm, be, params, {"input": x})
                    except Exception as e:  # reported, and the other cases still run
                        print(f"{backend_name:6s} {name:11s} ckpt={ckpt!s:5s} FAILED: {type(e).__name__}: {e}")
                        rows.append(
                            {
                                "backend": backend_name,
                                "model": name,
                                "checkpointing": ckpt,
                                "inplace": reuse,
                                "error": str(e),
                            }
                        )
                        continue
                    report = pm.memory_report()
                    if backend_name == "numpy":
                        got = numpy_fn_peak(lambda: pm.evaluate(params, {"input": x}, cot))
                        hand_np = native_numpy(name, params, x, cot["output"])
                        native = numpy_fn_peak(hand_np) if hand_np is not None and not ckpt else None
                    else:
                        got = cuda_peak(lambda: pm.evaluate(params, {"input": x}, cot))
                        hand = native_torch(name, params, x, cot["output"])
                        native = cuda_peak(hand) if name.startswith("mlp") and not ckpt else None
                est = report.peak_activations
                row = {
                    "backend": backend_name,
                    "model": name,
                    "checkpointing": ckpt,
                    "inplace": reuse,
                    "estimate_MiB": est / 2**20,
                    "workspace_MiB": report.workspace / 2**20,
                    "measured_MiB": got / 2**20,
                    "measured/estimate": got / est,
                    "native_MiB": None if native is None else native / 2**20,
                    "mithril/native": None if not native else got / native,
                }
                rows.append(row)
                extra = "" if native is None else f"  native {native / 2**20:8.1f} MiB  ratio {got / native:.2f}"
                print(
                    f"{backend_name:6s} {name:11s} ckpt={ckpt!s:5s} inplace={reuse!s:5s} estimate {est / 2**20:8.1f} MiB  "
                    f"measured {got / 2**20:8.1f} MiB  measured/estimate {got / est:.3f}{extra}",
                    flush=True,
                )
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "memory.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
