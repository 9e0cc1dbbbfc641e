"""Where Mithril's own time goes: the evidence behind docs/performance.md.

    python benchmarks/profile_overhead.py [evaluate|compile|import|layernorm|all] [--backend jax] [--top 20]
    python benchmarks/profile_overhead.py layernorm --device cuda

* ``evaluate``: per-call cost of ``pm.evaluate`` against the executable it runs (the
  generated function, called directly), for the seed MLP on each backend, and a
  cProfile of ``evaluate`` sorted by cumulative time.
* ``compile``: build and compile time of the GPT (12 and 48 layers) with the garbage
  collector on and off, and cProfiles (internal time) of both steps.
* ``import``: the time to make a NumPy backend in a fresh interpreter (plugin loading).
* ``layernorm``: GPT forward (12 layers, B=1, T=64) in torch eager: native with
  ``nn.LayerNorm``, native with the LayerNorm written as Mithril computes it
  (mean, sub, mul, mean, add, sqrt, div, mul, add), and Mithril; with the number
  of kernels each launches (torch.profiler). Shows what a fused layer_norm
  primitive would be worth (on a GPU, where small kernels are launch-bound).

Uses internals (``pm._compiled``) to reach the executable: a diagnostic, not an API.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _stats(pr: cProfile.Profile, sort: str, top: int) -> str:
    buf = io.StringIO()
    pstats.Stats(pr, stream=buf).strip_dirs().sort_stats(sort).print_stats(top)
    return "\n".join(line for line in buf.getvalue().splitlines() if line.strip())


def _per_call(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def profile_evaluate(backends: list[str], top: int, device: str = "cpu", model: str = "seed_mlp") -> None:
    import models as M
    import numpy as np

    import mithril as ml

    if model == "seed_mlp":
        logical, shape, n = M.seed_mlp(), (32, 20), 500
    else:
        cfg = M.GPTConfig(n_layers=12)
        logical, shape, n = M.gpt(cfg), tuple(M.gpt_input_shape(cfg)), 20
    for name in backends:
        dev = {"cuda": "gpu"}.get(device, device) if name == "jax" else device
        opts = {} if name in ("numpy", "ggml") else {"device": dev}
        try:
            be = ml.backend(name, dtype=ml.float32, **opts)
        except Exception as e:
            print(f"{name}: not available ({e})")
            continue
        jit = name in ("jax",)
        pm = ml.compile(logical, be, shapes={"input": list(shape)}, jit=jit)
        p = pm.randomize_params(seed=0)
        if name == "ggml":
            p = {k: np.asarray(v) for k, v in p.items()}
        x = be.array(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        inputs = {"input": x}
        if name == "jax":
            import jax

            sync = jax.block_until_ready
        elif name == "torch" and device != "cpu":
            import torch

            def sync(r):  # type: ignore[no-untyped-def]
                torch.cuda.synchronize()
                return r
        else:

            def sync(r):  # type: ignore[no-untyped-def]
                return r

        for _ in range(20):
            sync(pm.evaluate(p, inputs))
        exe = pm._compiled(pm.training, {"input": shape}, None).executable
        gc.collect()
        gc.freeze()
        t_eval = _per_call(lambda: sync(pm.evaluate(p, inputs)), n)
        t_run = _per_call(lambda: sync(exe.run(p, inputs, {})), n)
        print(
            f"\n=== evaluate overhead, {model} forward, {name}{' jit' if jit else ''} on {device}, "
            f"{len(p)} params: evaluate {t_eval * 1e6:.1f} us, executable.run {t_run * 1e6:.1f} us, "
            f"overhead {(t_eval - t_run) * 1e6:.1f} us per call (best of 5 x {n})"
        )
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(4 * n):
            sync(pm.evaluate(p, inputs))
        pr.disable()
        print(_stats(pr, "cumulative", top))


def profile_compile(top: int) -> None:
    import models as M

    import mithril as ml

    be = ml.NumpyBackend(dtype=ml.float32)
    ml.compile(M.gpt(M.GPTConfig(n_layers=2)), be, shapes={"input": [1, 64, 768]})
    print("\n=== GPT build / compile, garbage collector on vs off (seconds)")
    for n in (12, 24, 48):
        row = []
        for gc_on in (True, False):
            gc.collect()
            if not gc_on:
                gc.disable()
            t0 = time.perf_counter()
            m = M.gpt(M.GPTConfig(n_layers=n))
            t1 = time.perf_counter()
            ml.compile(m, be, shapes={"input": [1, 64, 768]})
            t2 = time.perf_counter()
            gc.enable()
            row.append(f"gc {'on ' if gc_on else 'off'}: build {t1 - t0:.3f} compile {t2 - t1:.3f}")
        print(f"{n:3d} layers: " + " | ".join(row))
    for n in (12, 48):
        gc.collect()
        pr = cProfile.Profile()
        pr.enable()
        m = M.gpt(M.GPTConfig(n_layers=n))
        pr.disable()
        print(f"\n=== build, GPT {n} layers (internal time)")
        print(_stats(pr, "tottime", top))
        gc.collect()
        pr = cProfile.Profile()
        pr.enable()
        ml.compile(m, be, shapes={"input": [1, 64, 768]})
        pr.disable()
        print(f"\n=== compile, GPT {n} layers (internal time)")
        print(_stats(pr, "tottime", top))


def profile_import() -> None:
    code = (
        "import time, warnings; warnings.simplefilter('ignore'); t0 = time.perf_counter(); import mithril as ml; "
        "t1 = time.perf_counter(); ml.NumpyBackend(); t2 = time.perf_counter(); import sys; "
        "print(f'import mithril {t1 - t0:.3f} s, first NumpyBackend() {t2 - t1:.3f} s; torch imported: '"
        'f\'{"torch" in sys.modules}, jax imported: {"jax" in sys.modules}\')'
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    print("\n=== import and plugin loading (fresh interpreter)")
    print(out.stdout.strip() or out.stderr.strip()[-500:])


def profile_layernorm(device: str) -> None:
    import statistics

    import models as M
    import native_torch as NT
    import torch
    from torch import nn

    import mithril as ml

    class DecomposedLN(nn.Module):
        def __init__(self, d: int, eps: float) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d))
            self.bias = nn.Parameter(torch.zeros(d))
            self.eps = eps

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            c = x - x.mean(-1, keepdim=True)
            return c / torch.sqrt((c * c).mean(-1, keepdim=True) + self.eps) * self.weight + self.bias

    cfg = M.GPTConfig(n_layers=12)
    be = ml.TorchBackend(dtype=ml.float32, device=device)
    pm = ml.compile(M.gpt(cfg), be, shapes={"input": M.gpt_input_shape(cfg)})
    p = pm.randomize_params(seed=0)
    x = be.randn(*M.gpt_input_shape(cfg))
    params = {k: be.to_numpy(v) for k, v in p.items()}
    fused, dec = NT.GPT(cfg), NT.GPT(cfg)
    for i in range(cfg.n_layers):
        blk = getattr(dec, f"h_{i}")
        blk.ln_1, blk.ln_2 = DecomposedLN(cfg.d_model, cfg.eps), DecomposedLN(cfg.d_model, cfg.eps)
    dec.ln_f = DecomposedLN(cfg.d_model, cfg.eps)
    for m in (fused, dec):
        m.to(x.device)
        NT.load_params(m, params)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    inputs = {"input": x}
    fs = {
        "native, nn.LayerNorm": lambda: fused(x),
        "native, LayerNorm as 9 ops": lambda: dec(x),
        "Mithril": lambda: pm.evaluate(p, inputs),
    }
    res: dict[str, list[float]] = {k: [] for k in fs}
    with torch.no_grad():
        for f in fs.values():
            f()
            f()
        for _ in range(15):
            for k, f in fs.items():
                sync()
                t0 = time.perf_counter()
                for _ in range(10):
                    f()
                sync()
                res[k].append((time.perf_counter() - t0) / 10)
        kernels = {}
        for k, f in fs.items():
            with torch.profiler.profile() as prof:
                f()
                sync()
            kernels[k] = sum(
                e.count
                for e in prof.key_averages()
                if e.key.startswith("aten::") and e.key not in ("aten::empty", "aten::empty_strided")
            )
    print(f"\n=== GPT 12 layers forward, torch eager on {device}: LayerNorm fused or decomposed")
    for k, v in res.items():
        print(
            f"{k:28s} median {statistics.median(v) * 1e3:8.3f} ms  min {min(v) * 1e3:8.3f} ms  "
            f"aten ops per call {kernels[k]}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="all", choices=("evaluate", "compile", "import", "layernorm", "all"))
    ap.add_argument("--device", default="cpu", help="device for 'evaluate' and 'layernorm' (cpu, cuda)")
    ap.add_argument("--backend", action="append", help="backends for 'evaluate' (default: numpy, torch, jax)")
    ap.add_argument("--top", type=int, default=18)
    ap.add_argument("--model", default="seed_mlp", choices=("seed_mlp", "gpt"), help="model for 'evaluate'")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    from run import _mithril_backends

    _mithril_backends(log=lambda msg: None)  # packages on PYTHONPATH only: register their plugins
    if args.what in ("import", "all"):
        profile_import()
    if args.what in ("evaluate", "all"):
        profile_evaluate(args.backend or ["numpy", "torch", "jax"], args.top, args.device, args.model)
    if args.what in ("compile", "all"):
        profile_compile(args.top)
    if args.what in ("layernorm", "all"):
        profile_layernorm(args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
