"""Recurrent models on Scan (issue 18): build + compile time and the forward+backward step against torch.nn.LSTM.

For each sequence length T, Mithril's zoo ``LSTM`` is built and compiled for its gradients
(``ml.compile`` and the first ``evaluate`` with ``output_gradients``, which is where a jit
backend compiles): that is the compile column, measured with torch's on-disk compile caches
off (Inductor's FX graph cache and AOTAutograd's cache), so every torch-jit figure is a cold
compile. The step (forward and backward of ``sum(cot * output)``) of every target is then timed
by ``harness.time_variants``: interleaved rounds, median per-call time, and the ratio to
hand-written ``torch.nn.LSTM`` (``output.backward(cot)``, same sizes, same process) per round,
with its spread (interquartile range / median). torch runs on one thread.

``torch-jit`` runs the loop outside the compiled graph and calls the body, which dynamo
compiles once (the default, ``mithril_torch.control_flow.COMPILE_BODIES``); ``torch-jit
eager-body`` is the previous version: the loop and its body as eager torch behind a graph break.
The compile column should not grow with T (one ``scan`` per layer and direction; before
issue 18 the LSTM was unrolled into T copies of its cell).

    python benchmarks/bench_recurrent.py [--lengths 16 128 1024] [--rounds 5] [--out benchmarks/results/recurrent]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from harness import Stats, Variant, load_1min, machine_info, ratio_stats, time_variants

import mithril as ml
from mithril.models import LSTM

N, IN, H = 8, 32, 64  # batch, input size, hidden size


def mithril_step(backend: Any, jit: bool, steps: int, compile_bodies: bool) -> tuple[Callable[[], None], float]:
    """The training step of Mithril's LSTM, and its build + compile + first call time."""
    from mithril_torch import control_flow

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    pm = ml.compile(LSTM(IN, H), backend, shapes={"input": [steps, N, IN]}, jit=jit)
    params = pm.randomize_params()
    x = backend.array(rng.normal(size=(steps, N, IN)).astype(np.float32))
    cot = {"output": backend.array(rng.normal(size=(steps, N, H)).astype(np.float32))}

    def step() -> None:
        control_flow.COMPILE_BODIES = compile_bodies  # read by the scan kernel on every call
        _, grads = pm.evaluate(params, {"input": x}, output_gradients=cot)
        for g in grads.values():
            backend.to_numpy(g)  # wait for the result (JAX dispatches asynchronously)

    step()
    return step, time.perf_counter() - t0


def torch_nn_step(steps: int) -> tuple[Callable[[], None], float]:
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
    return step, time.perf_counter() - t0


def torch_compile_warmup() -> float:
    """Seconds of torch.compile's one-time start (Inductor, the C++ toolchain) on a tiny function with a backward,
    paid by the first compiled model in a process; measured apart so that it is not charged to the first T."""
    import torch

    w = torch.randn(4, 4, requires_grad=True)
    t0 = time.perf_counter()
    torch.compile(lambda x: torch.tanh(x @ w).sum())(torch.randn(2, 4)).backward()
    return time.perf_counter() - t0


def write_report(result: dict[str, Any], out: Path) -> None:
    """results.md from the results (``--report-only`` rewrites it from results.json)."""
    lines = [
        f"# LSTM on Scan: N={N}, I={IN}, H={H}, float32, CPU; step = forward + backward",
        "",
        f"torch.compile's one-time warm-up (a tiny function, before the first model): {result['torch_compile_warmup_s']:.2f} s.",
        "",
        "The compile column includes the first call, i.e. one step's own run time too; the next column",
        "takes the median step off it.",
        "",
        "| T | target | build + compile (s) | less one step (s) | step (ms, median) "
        "| step / torch.nn (median [min, max], spread) |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        ratio = r["step_ratio"]
        lines.append(
            f"| {r['T']} | {r['target']} | {r['build_compile_s']:.2f} | "
            f"{r['build_compile_s'] - r['step']['median']:.2f} | {r['step']['median'] * 1e3:.2f} | "
            f"{ratio['median']:.2f} [{ratio['min']:.2f}, {ratio['max']:.2f}], {ratio['spread']:.0%}"
            f"{' (unstable)' if ratio['unstable'] else ''} |"
        )
    lines += [
        "",
        "torch-jit with a compiled loop body / with an eager one (the previous version), per round:",
        "",
        "| T | step ratio (median [min, max], spread) |",
        "|---|---|",
    ]
    for r in result["rows"]:
        if "step_vs_eager_body" in r:
            q = r["step_vs_eager_body"]
            lines.append(f"| {r['T']} | {q['median']:.2f} [{q['min']:.2f}, {q['max']:.2f}], {q['spread']:.0%} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 128, 1024])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--target-s", type=float, default=0.3, help="seconds per variant per round")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "recurrent")
    parser.add_argument("--report-only", action="store_true", help="rewrite results.md from results.json")
    args = parser.parse_args()
    if args.report_only:
        write_report(json.loads((args.out / "results.json").read_text()), args.out)
        return
    import torch
    import torch._functorch.config
    import torch._inductor.config

    torch.set_num_threads(1)  # one thread for torch.nn and Mithril alike (a shared CPU makes more threads noise)
    torch._inductor.config.fx_graph_cache = False  # every compile is measured cold
    torch._functorch.config.enable_autograd_cache = False
    targets = {  # name: (backend, jit, compile loop bodies under torch.compile)
        "numpy": (ml.NumpyBackend(), False, True),
        "torch": (ml.TorchBackend(), False, True),
        "torch-jit": (ml.TorchBackend(), True, True),
        "torch-jit eager-body": (ml.TorchBackend(), True, False),
        "jax-jit": (ml.JaxBackend(), True, True),
    }
    warmup_s = torch_compile_warmup()
    print(f"torch.compile one-time warm-up {warmup_s:.2f} s", flush=True)
    rows = []
    warnings.simplefilter("error", RuntimeWarning)  # a torch.compile fallback to eager would be mismeasured
    for steps in args.lengths:
        fn, compile_s = torch_nn_step(steps)
        variants = [Variant("torch.nn.LSTM", fn, mem_method="none")]
        compile_times = {"torch.nn.LSTM": compile_s}
        for name, (backend, jit, bodies) in targets.items():
            fn, compile_s = mithril_step(backend, jit, steps, bodies)
            variants.append(Variant(f"mithril {name}", fn, mem_method="none", baseline="torch.nn.LSTM"))
            compile_times[f"mithril {name}"] = compile_s
        load = load_1min()
        per_round = time_variants(variants, rounds=args.rounds, target_s=args.target_s)
        ref = per_round["torch.nn.LSTM"]
        for v in variants:
            step = Stats.of(per_round[v.name])
            ratio = ratio_stats(per_round[v.name], ref)
            row = {
                "T": steps,
                "target": v.name,
                "build_compile_s": compile_times[v.name],
                "step": step.as_dict(),
                "step_ratio": ratio.as_dict(),
                "load_1min_before": load,
            }
            if v.name == "mithril torch-jit":  # the compiled body against the eager one, round by round
                row["step_vs_eager_body"] = ratio_stats(
                    per_round[v.name], per_round["mithril torch-jit eager-body"]
                ).as_dict()
            rows.append(row)
            print(f"T={steps:5d} {v.name:28s} compile {compile_times[v.name]:7.2f} s  "
                  f"step {step.median * 1e3:8.2f} ms  ({ratio.median:.2f}x torch.nn, spread {ratio.spread:.0%})",
                  flush=True)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"sizes": {"N": N, "I": IN, "H": H}, "machine": machine_info(), "torch_compile_warmup_s": warmup_s}
    result["rows"] = rows
    (args.out / "results.json").write_text(json.dumps(result, indent=1))
    write_report(result, args.out)


if __name__ == "__main__":
    main()
