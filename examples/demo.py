"""The main job: the quickstart model compiled for every installed backend.

For each backend: compile, evaluate, compute gradients, train with SGD, and
check that every backend gives the same output for the same parameters.
Run with ``nox -s demo`` (or ``python examples/demo.py`` where mithril is installed).
"""

from __future__ import annotations

import sys
import time

import numpy as np

import mithril as ml
from mithril.models import Linear, Model, Relu


def build_model() -> Model:
    model = Model()
    model |= Linear(dimension=64)
    model += Relu()
    model += Linear(dimension=10)
    return model


def train(pm, backend, params, x, y, epochs: int = 5, lr: float = 0.05, batch: int = 32):
    """Plain SGD on MSE, as in the quickstart's training loop; returns the loss per epoch."""
    losses = []
    n = x.shape[0] // batch
    for _ in range(epochs):
        total = 0.0
        for i in range(n):
            xb, yb = x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch]
            inputs = {"input": backend.array(xb)}
            out = pm.evaluate(params, inputs)["output"]
            diff = out - backend.array(yb)
            total += float(backend.to_numpy(backend.mean(diff * diff)))
            _, grads = pm.evaluate(params, inputs, {"output": 2 * diff / batch})
            params = {k: params[k] - lr * grads[k] for k in params}
        losses.append(total / n)
    return params, losses


def main() -> int:
    print(f"mithril {ml.__version__}")
    print(ml.plugins.report())
    print()
    model = build_model()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1024, 20))
    w = rng.standard_normal((20, 10))
    y = x @ w + 0.1 * rng.standard_normal((1024, 10))
    x, y = x.astype(np.float32), y.astype(np.float32)

    reference = None
    ok = True
    for name in sorted(ml.plugins.backends()):
        backend = ml.backend(name, dtype=ml.float32)
        t0 = time.perf_counter()
        try:
            pm = ml.compile(model, backend, shapes={"input": [32, 20]})
        except ml.MithrilError as e:
            print(f"[{name}] cannot compile: {e}")
            continue
        t_compile = time.perf_counter() - t0
        if reference is None:
            print(pm.summary())
            print()
            backend.seed(0)
            reference = {k: backend.to_numpy(v) for k, v in pm.randomize_params().items()}
        params = {k: backend.array(v) for k, v in reference.items()}
        out = backend.to_numpy(pm.evaluate(params, {"input": backend.array(x[:32])})["output"])
        ref_out = np.maximum(x[:32] @ reference["linear_0.weight"].T + reference["linear_0.bias"], 0)
        ref_out = ref_out @ reference["linear_1.weight"].T + reference["linear_1.bias"]
        err = float(np.max(np.abs(out - ref_out)))
        try:
            params, losses = train(pm, backend, params, x, y)
        except ml.MithrilError as e:
            print(f"[{name}] compiled in {t_compile * 1e3:.1f} ms, output max error {err:.1e}; "
                  f"no training: {e}")
            continue
        falls = losses[-1] < losses[0]
        ok &= falls and err < 1e-4
        print(f"[{name}] compiled in {t_compile * 1e3:.1f} ms; output vs NumPy-by-hand max error {err:.1e}; "
              f"loss per epoch: {', '.join(f'{v:.4f}' for v in losses)} ({'falls' if falls else 'DOES NOT FALL'})")
    if reference is not None and "ggml" in ml.plugins.backends():
        # the deployment phase: int8 weights, inference-only graph
        deploy = ml.compile(model, ml.GGMLBackend(quantize="int8"), static_inference=True)
        out = deploy.evaluate(reference, {"input": x[:32]})["output"]
        ref_out = np.maximum(x[:32] @ reference["linear_0.weight"].T + reference["linear_0.bias"], 0)
        ref_out = ref_out @ reference["linear_1.weight"].T + reference["linear_1.bias"]
        rel = float(np.linalg.norm(out - ref_out) / np.linalg.norm(ref_out))
        print(f"[ggml int8, static_inference] relative error vs float32: {rel:.2%}")
        print(deploy.summary().split("quantization:")[-1].rstrip())
        ok &= rel < 0.02
    if reference is None:
        print("no backend is installed: pip install mithril[numpy] (or [torch], [jax], [ggml], [all])")
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
