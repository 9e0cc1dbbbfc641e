"""The main job: the quickstart model compiled for every installed backend.

For each backend: compile, evaluate, compute gradients and train with the
quickstart's hand-written SGD loop; then train with the training API
(``ml.Trainer``: one compiled step of forward, loss, backward and AdamW with a
cosine schedule) from the same initial weights, and check that every backend
gives the same output and the same loss curve. GGML is for inference: it gets
the trained weights, quantized to int8. Ends with a one-line verdict and a
non-zero exit status on any failure.
Run with ``nox -s demo`` (or ``python examples/demo.py`` where mithril is installed).
"""

from __future__ import annotations

import sys
import time

import numpy as np

import mithril as ml
from mithril.models import Linear, Model, MSELoss, Relu

EPOCHS, BATCH, N_TRAIN = 5, 32, 896


def build_model() -> Model:
    model = Model()
    model |= Linear(dimension=64)
    model += Relu()
    model += Linear(dimension=10)
    return model


def train(pm, backend, params, x, y, epochs: int = EPOCHS, lr: float = 0.05, batch: int = BATCH):
    """Plain SGD on MSE, as in the quickstart's training loop; returns the loss per epoch."""
    losses = []
    n = x.shape[0] // batch
    for _ in range(epochs):
        total = 0.0
        for i in range(n):
            xb, yb = x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]
            inputs = {"input": backend.array(xb)}
            out = pm.evaluate(params, inputs)["output"]
            diff = out - backend.array(yb)
            total += float(backend.to_numpy(backend.mean(diff * diff)))
            _, grads = pm.evaluate(params, inputs, {"output": 2 * diff / batch})
            params = {k: params[k] - lr * grads[k] for k in params}
        losses.append(total / n)
    return params, losses


def fit(model, backend, params, x, y):
    """The training API: AdamW with a cosine schedule in one compiled step; returns trainer and history."""
    schedule = ml.schedules.Cosine(1e-2, total_steps=EPOCHS * N_TRAIN // BATCH, warmup_steps=10)
    trainer = ml.Trainer(
        model,
        backend,
        loss=MSELoss(),
        optimizer=ml.optim.AdamW(lr=schedule),
        metrics=["mae"],
        params={k: backend.array(v) for k, v in params.items()},
        shapes={"input": [None, 20]},
    )
    history = trainer.fit(x[:N_TRAIN], y[:N_TRAIN], epochs=EPOCHS, batch_size=BATCH, shuffle=False, verbose=False)
    return trainer, history


def reference_output(params, x):
    hidden = np.maximum(x @ params["linear_0.weight"].T + params["linear_0.bias"], 0)
    return hidden @ params["linear_1.weight"].T + params["linear_1.bias"]


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
    first_curve: tuple[str, list[float]] | None = None
    trained: dict[str, np.ndarray] | None = None
    results: dict[str, bool] = {}  # backend -> passed, for the verdict
    for name in sorted(ml.plugins.backends()):
        backend = ml.backend(name, dtype=ml.float32)
        t0 = time.perf_counter()
        try:
            pm = ml.compile(model, backend, shapes={"input": [32, 20]})
        except ml.MithrilError as e:
            print(f"[{name}] cannot compile: {e}")
            results[name] = False
            continue
        t_compile = time.perf_counter() - t0
        if reference is None:
            print(pm.summary())
            print()
            backend.seed(0)
            reference = {k: backend.to_numpy(v) for k, v in pm.randomize_params().items()}
        params = {k: backend.array(v) for k, v in reference.items()}
        out = backend.to_numpy(pm.evaluate(params, {"input": backend.array(x[:32])})["output"])
        err = float(np.max(np.abs(out - reference_output(reference, x[:32]))))
        if not backend.supports_training:
            print(
                f"[{name}] compiled in {t_compile * 1e3:.1f} ms; output vs NumPy-by-hand max error {err:.1e}; "
                f"inference only (it runs the weights trained below)"
            )
            results[name] = err < 1e-4
            continue
        try:
            _, losses = train(pm, backend, params, x, y)
            trainer, history = fit(model, backend, reference, x, y)
        except ml.MithrilError as e:
            print(f"[{name}] compiled in {t_compile * 1e3:.1f} ms, output max error {err:.1e}; no training: {e}")
            results[name] = False
            continue
        falls = losses[-1] < losses[0]
        print(
            f"[{name}] compiled in {t_compile * 1e3:.1f} ms; output vs NumPy-by-hand max error {err:.1e}; "
            f"hand-written SGD, loss per epoch: {', '.join(f'{v:.4f}' for v in losses)} "
            f"({'falls' if falls else 'DOES NOT FALL'})"
        )
        curve = history["loss"]
        fit_falls = curve[-1] < curve[0] / 2
        if first_curve is None:
            first_curve, same = (name, curve), True
            trained = trainer.params_numpy()
        else:
            same = bool(np.allclose(curve, first_curve[1], rtol=1e-3))
        val = trainer.evaluate(x[N_TRAIN:], y[N_TRAIN:])
        print(
            f"[{name}] ml.Trainer (AdamW, cosine schedule, one compiled step), loss per "
            f"epoch: {', '.join(f'{v:.4f}' for v in curve)}; validation loss {val['loss']:.4f}, mae "
            f"{val['mae']:.3f}"
            + (
                ""
                if first_curve[0] == name
                else f"; {'same curve as ' + first_curve[0] if same else 'DIFFERS from ' + first_curve[0]}"
            )
        )
        results[name] = err < 1e-4 and falls and fit_falls and same
    if trained is not None and "ggml" in ml.plugins.backends():
        # the deployment phase: the trained weights, int8, an inference-only graph
        deploy = ml.compile(model, ml.GGMLBackend(quantize="int8"), static_inference=True)
        out = deploy.evaluate(trained, {"input": x[N_TRAIN : N_TRAIN + 32]})["output"]
        ref_out = reference_output(trained, x[N_TRAIN : N_TRAIN + 32])
        rel = float(np.linalg.norm(out - ref_out) / np.linalg.norm(ref_out))
        print(f"[ggml int8, static_inference, trained weights] relative error vs float32: {rel:.2%}")
        print(deploy.summary().split("quantization:")[-1].rstrip())
        results["ggml int8"] = rel < 0.02
    if not results:
        print(
            "no backend is installed: from a Mithril checkout, pip install -c constraints.txt "
            "-e packages/mithril-numpy (or mithril-torch, mithril-jax, mithril-ggml)"
        )
        return 1
    ok = all(results.values())
    print(
        "\nverdict: "
        + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in results.items())
        + ("" if ok else " -> FAILED")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
