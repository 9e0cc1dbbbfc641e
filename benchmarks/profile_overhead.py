"""Where Mithril's own time goes: the evidence behind docs/performance.md.

    python benchmarks/profile_overhead.py [evaluate|compile|import|all] [--backend jax] [--top 20]

* ``evaluate``: per-call cost of ``pm.evaluate`` against the executable it runs (the
  generated function, called directly), for the seed MLP on each backend, and a
  cProfile of ``evaluate`` sorted by cumulative time.
* ``compile``: build and compile time of the GPT (12 and 48 layers) with the garbage
  collector on and off, and cProfiles (internal time) of both steps.
* ``import``: the time to make a NumPy backend in a fresh interpreter (plugin loading).

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


def profile_evaluate(backends: list[str], top: int) -> None:
    import numpy as np

    import mithril as ml
    import models as M

    for name in backends:
        try:
            be = ml.backend(name, dtype=ml.float32)
        except Exception as e:  # noqa: BLE001
            print(f"{name}: not available ({e})")
            continue
        jit = name in ("jax",)
        pm = ml.compile(M.seed_mlp(), be, shapes={"input": [32, 20]}, jit=jit)
        p = pm.randomize_params(seed=0)
        if name == "ggml":
            p = {k: np.asarray(v) for k, v in p.items()}
        x = be.array(np.random.default_rng(0).standard_normal((32, 20)).astype(np.float32))
        inputs = {"input": x}
        sync = (lambda r: __import__("jax").block_until_ready(r)) if name == "jax" else (lambda r: r)
        for _ in range(50):
            sync(pm.evaluate(p, inputs))
        exe = pm._compiled(pm.training, {"input": (32, 20)}, None).executable  # noqa: SLF001
        gc.collect()
        gc.freeze()
        t_eval = _per_call(lambda: sync(pm.evaluate(p, inputs)), 500)
        t_run = _per_call(lambda: sync(exe.run(p, inputs, {})), 500)
        print(f"\n=== evaluate overhead, seed MLP forward, {name}{' jit' if jit else ''}: evaluate "
              f"{t_eval * 1e6:.1f} us, executable.run {t_run * 1e6:.1f} us, overhead "
              f"{(t_eval - t_run) * 1e6:.1f} us per call (best of 5 x 500)")
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(2000):
            sync(pm.evaluate(p, inputs))
        pr.disable()
        print(_stats(pr, "cumulative", top))


def profile_compile(top: int) -> None:
    import mithril as ml
    import models as M

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
    code = ("import time, warnings; warnings.simplefilter('ignore'); t0 = time.perf_counter(); import mithril as ml; "
            "t1 = time.perf_counter(); ml.NumpyBackend(); t2 = time.perf_counter(); import sys; "
            "print(f'import mithril {t1 - t0:.3f} s, first NumpyBackend() {t2 - t1:.3f} s; torch imported: '"
            "f'{\"torch\" in sys.modules}, jax imported: {\"jax\" in sys.modules}')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    print("\n=== import and plugin loading (fresh interpreter)")
    print(out.stdout.strip() or out.stderr.strip()[-500:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="all", choices=("evaluate", "compile", "import", "all"))
    ap.add_argument("--backend", action="append", help="backends for 'evaluate' (default: numpy, torch, jax)")
    ap.add_argument("--top", type=int, default=18)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    if args.what in ("import", "all"):
        profile_import()
    if args.what in ("evaluate", "all"):
        profile_evaluate(args.backend or ["numpy", "torch", "jax"], args.top)
    if args.what in ("compile", "all"):
        profile_compile(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
