"""Recurrent models on Scan (issue 18): build + compile time and the forward+backward step against torch.nn.LSTM.

For each sequence length T, Mithril's zoo ``LSTM`` is built and compiled for its gradients
(``ml.compile`` and the first ``evaluate`` with ``output_gradients``, which is where a jit
backend compiles), then the step (forward and backward of ``sum(cot * output)``) is timed
as the median of several calls. The reference is hand-written ``torch.nn.LSTM`` in the same
process: ``output.backward(cot)`` on the same sizes, torch on one thread. The step is timed after
two warm-up calls. Figures: seconds, and the step's ratio
Mithril / torch.nn. The compile column should not grow with T (one ``scan`` per layer and
direction; before issue 18 the LSTM was unrolled into T copies of its cell).

    python benchmarks/bench_recurrent.py [--lengths 16 128 1024] [--out benchmarks/results/recurrent]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import mithril as ml
from mithril.models import LSTM

N, IN, H = 8, 32, 64  # batch, input size, hidden size


def _median_step(fn: Any, reps: int, warmup: int = 2) -> float:
    for _ in range(warmup):  # torch.compile finishes compiling the code after its graph breaks on later calls
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_mithril(backend: Any, jit: bool, steps: int, reps: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    model = LSTM(IN, H)
    pm = ml.compile(model, backend, shapes={"input": [steps, N, IN]}, jit=jit)
    params = pm.randomize_params()
    x = backend.array(rng.normal(size=(steps, N, IN)).astype(np.float32))
    cot = {"output": backend.array(rng.normal(size=(steps, N, H)).astype(np.float32))}

    def step() -> None:
        _, grads = pm.evaluate(params, {"input": x}, output_gradients=cot)
        for g in grads.values():
            backend.to_numpy(g)  # wait for the result (JAX dispatches asynchronously)

    step()
    compile_s = time.perf_counter() - t0
    return {"build_compile_s": compile_s, "step_s": _median_step(step, reps)}


def bench_torch_nn(steps: int, reps: int) -> dict[str, float]:
    import torch

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    lstm = torch.nn.LSTM(IN, H)
    x = torch.tensor(rng.normal(size=(steps, N, IN)), dtype=torch.float32)
    cot = torch.tensor(rng.normal(size=(steps, N, H)), dtype=torch.float32)

    def step() -> None:
        lstm.zero_grad()
        out, _ = lstm(x)
        out.backward(cot)

    step()
    build_s = time.perf_counter() - t0
    return {"build_compile_s": build_s, "step_s": _median_step(step, reps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 128, 1024])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "recurrent")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # one thread for torch.nn and Mithril alike (a shared CPU makes more threads noise)
    targets = {
        "numpy": (ml.NumpyBackend(), False),
        "torch": (ml.TorchBackend(), False),
        "torch-jit": (ml.TorchBackend(), True),
        "jax-jit": (ml.JaxBackend(), True),
    }
    rows = []
    warnings.simplefilter("error", RuntimeWarning)  # a torch.compile fallback to eager would be mismeasured
    for steps in args.lengths:
        reps = max(2, args.reps if steps <= 128 else args.reps // 2)
        ref = bench_torch_nn(steps, reps)
        rows.append({"T": steps, "target": "torch.nn.LSTM", **ref, "step_ratio": 1.0})
        for name, (backend, jit) in targets.items():
            r = bench_mithril(backend, jit, steps, reps)
            rows.append({"T": steps, "target": f"mithril {name}", **r, "step_ratio": r["step_s"] / ref["step_s"]})
            print(f"T={steps:5d} {name:10s} compile {r['build_compile_s']:7.2f} s  step {r['step_s'] * 1e3:8.2f} ms "
                  f"({rows[-1]['step_ratio']:.2f}x torch.nn)", flush=True)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"sizes": {"N": N, "I": IN, "H": H}, "rows": rows}, indent=1))
    lines = [
        f"# LSTM on Scan: N={N}, I={IN}, H={H}, float32, CPU; step = forward + backward",
        "",
        "| T | target | build + compile (s) | step (ms) | step / torch.nn |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['T']} | {r['target']} | {r['build_compile_s']:.2f} | {r['step_s'] * 1e3:.2f} | {r['step_ratio']:.2f} |"
        for r in rows
    ]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
