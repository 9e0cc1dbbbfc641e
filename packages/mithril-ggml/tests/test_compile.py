"""The quickstart's production phase through ``ml.compile`` (the core's physical model)."""

from __future__ import annotations

import numpy as np
from isolate import run_isolated

import mithril as ml
from mithril_ggml import GGMLBackend


def quickstart_model():
    from mithril.models import Linear, Model, Relu

    model = Model()
    model |= Linear(dimension=64)
    model += Relu()
    model += Linear(dimension=10)
    return model


def test_static_inference_int8_summary():
    be = GGMLBackend(quantize="int8")
    pm = ml.compile(quickstart_model(), be, shapes={"input": [32, 20]}, static_inference=True)
    be.seed(0)
    params = pm.randomize_params()
    x = be.randn(32, 20)
    out = pm.evaluate(params, {"input": x})["output"]
    assert out.shape == (32, 10) and out.dtype == np.float32
    w0, b0, w1, b1 = (params[k] for k in ("linear_0.weight", "linear_0.bias", "linear_1.weight", "linear_1.bias"))
    ref = np.maximum(x @ w0.T + b0, 0) @ w1.T + b1
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 0.02
    summary = pm.summary()
    assert "linear_1.weight: q8_0" in summary and "row length 20" in summary
    assert "MUL_MAT" in pm.source


def quickstart_gradients():
    be = GGMLBackend()
    pm = ml.compile(quickstart_model(), be, shapes={"input": [32, 20]})
    be.seed(1)
    params = pm.randomize_params()
    x, cot = be.randn(32, 20), be.randn(32, 10)
    out, grads = pm.evaluate(params, {"input": x}, {"output": cot})
    return params, x, cot, out["output"], grads


def test_gradients_through_evaluate():
    params, x, cot, out, grads = run_isolated(quickstart_gradients)
    w0, b0, w1, b1 = (
        params[k].astype(np.float64) for k in ("linear_0.weight", "linear_0.bias", "linear_1.weight", "linear_1.bias")
    )
    h = x @ w0.T + b0
    r = np.maximum(h, 0)
    np.testing.assert_allclose(out, r @ w1.T + b1, rtol=1e-5, atol=1e-5)
    gh = (cot @ w1) * (h > 0)
    want = {
        "linear_1.weight": cot.T @ r,
        "linear_1.bias": cot.sum(0),
        "linear_0.weight": gh.T @ x,
        "linear_0.bias": gh.sum(0),
    }
    for k, v in want.items():
        np.testing.assert_allclose(grads[k], v, rtol=1e-4, atol=1e-4, err_msg=k)
