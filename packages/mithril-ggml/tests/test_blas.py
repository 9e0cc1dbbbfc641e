"""Batched products through NumPy's BLAS inside the ggml graph (mithril_ggml.blas), broadcast rows
and the executable's fast call, against float64 NumPy references, torch.nn.functional.conv2d and a
hand-written Q8_0 decoder."""

from __future__ import annotations

import numpy as np
import pytest
from graphs import conv2d_ref, mlp, one_node

from mithril.errors import EvaluationError
from mithril_ggml import GGMLBackend
from mithril_ggml.blas import MIN_ROWS, _Linear


def mlp_params(rng: np.random.Generator, d_in: int, hidden: int, d_out: int) -> dict[str, np.ndarray]:
    shapes = {"l1.weight": (hidden, d_in), "l1.bias": (hidden,), "l2.weight": (d_out, hidden), "l2.bias": (d_out,)}
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def mlp_ref(p: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    f = {k: v.astype(np.float64) for k, v in p.items()}
    h = np.maximum(x.astype(np.float64) @ f["l1.weight"].T + f["l1.bias"], 0)
    return h @ f["l2.weight"].T + f["l2.bias"]


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("n_threads", [1, 2])
def test_batched_linear_goes_to_blas_and_matches_numpy(rng, n_threads):
    exe = GGMLBackend(n_threads=n_threads).lower(mlp(batch=97, d_in=20, hidden=64, d_out=10), jit=False)
    assert "MUL_MAT(BLAS)" in exe.source
    p = mlp_params(rng, 20, 64, 10)
    x = rng.standard_normal((97, 20)).astype(np.float32)
    out = exe.run(p, {"input": x}, {})[0]["output"]
    np.testing.assert_allclose(out, mlp_ref(p, x), rtol=1e-4, atol=1e-4)


def test_small_batches_keep_ggml_mul_mat():
    exe = GGMLBackend().lower(mlp(batch=MIN_ROWS - 1, d_in=64, hidden=64, d_out=32), jit=False)
    assert "BLAS" not in exe.source and "MUL_MAT" in exe.source


def _q8_0_decode(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q8_0 by hand: per block of 32 weights a float16 scale, then 32 int8 values."""
    blocks = raw.reshape(rows, cols // 32, 34)
    scale = blocks[:, :, :2].copy().view(np.float16).astype(np.float64)
    q = blocks[:, :, 2:].copy().view(np.int8).astype(np.float64)
    return (scale * q).reshape(rows, cols)


def test_int8_batched_product_uses_the_dequantized_weight(rng):
    exe = GGMLBackend(quantize="int8").lower(mlp(batch=64, d_in=64, hidden=64, d_out=32), jit=False)
    assert "CPY MUL_MAT(BLAS)" in exe.source
    p = mlp_params(rng, 64, 64, 32)
    x = rng.standard_normal((64, 64)).astype(np.float32)
    out = exe.run(p, {"input": x}, {})[0]["output"]
    stored = exe.stored_params()
    deq = dict(p)
    for name in ("l1.weight", "l2.weight"):
        plan, raw = stored[name]
        assert plan.type_name == "q8_0"
        deq[name] = _q8_0_decode(raw, *p[name].shape).astype(np.float32)
    np.testing.assert_allclose(out, mlp_ref(deq, x), rtol=1e-4, atol=1e-4)  # the float32 product of those weights


CONVS = [
    dict(padding=(1, 1)),
    dict(stride=(2, 1), padding=(0, 2)),
    dict(dilation=(2, 2), padding=(2, 1)),
    dict(stride=(2, 2)),
]


@pytest.mark.parametrize("attrs", CONVS, ids=lambda a: ",".join(f"{k}={v}" for k, v in a.items()))
@pytest.mark.parametrize("n_threads", [1, 2])
def test_batched_conv2d_goes_to_blas_and_matches_torch(rng, attrs, n_threads):
    torch = pytest.importorskip("torch")
    full = dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1) | attrs
    x = rng.standard_normal((8, 3, 16, 15)).astype(np.float32)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    g = one_node("conv2d", [x.shape, w.shape], **full)
    exe = GGMLBackend(n_threads=n_threads).lower(g, jit=False)
    assert "CONV_2D(BLAS)" in exe.source and "IM2COL" not in exe.source
    for _ in range(2):  # the padded scratch keeps its zero border from call to call
        out = exe.run({}, {"a0": x, "a1": w}, {})[0]["out"]
        want = torch.nn.functional.conv2d(
            torch.from_numpy(x).double(),
            torch.from_numpy(w).double(),
            stride=full["stride"],
            padding=full["padding"],
            dilation=full["dilation"],
        ).numpy()
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
        x = rng.standard_normal(x.shape).astype(np.float32)


def test_grouped_conv2d_through_blas(rng):
    x = rng.standard_normal((8, 4, 16, 16)).astype(np.float32)
    w = rng.standard_normal((12, 2, 3, 3)).astype(np.float32)
    g = one_node("conv2d", [x.shape, w.shape], stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=2)
    exe = GGMLBackend().lower(g, jit=False)
    assert "CONV_2D(BLAS)" in exe.source
    out = exe.run({}, {"a0": x, "a1": w}, {})[0]["out"]
    want = np.concatenate(
        [conv2d_ref(x[:, 2 * i : 2 * i + 2], w[6 * i : 6 * i + 6], padding=(1, 1)) for i in range(2)], axis=1
    )
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_a_failing_blas_product_raises_instead_of_returning_garbage(rng, monkeypatch):
    exe = GGMLBackend().lower(mlp(batch=64, d_in=32, hidden=64, d_out=8), jit=False)
    p = mlp_params(rng, 32, 64, 8)
    x = rng.standard_normal((64, 32)).astype(np.float32)

    def boom(self, ith, nth, *views):
        raise ValueError("no BLAS today")

    monkeypatch.setattr(_Linear, "compute", boom)
    with pytest.raises(EvaluationError, match=r"BLAS matrix product.*no BLAS today"):
        exe.run(p, {"input": x}, {})
    monkeypatch.undo()
    np.testing.assert_allclose(exe.run(p, {"input": x}, {})[0]["output"], mlp_ref(p, x), rtol=1e-4, atol=1e-4)


BIAS_SHAPES = [(1, 16, 1, 1), (16, 1, 1), (1, 1, 9, 1), (1, 1, 1, 1), (8, 1, 9, 1), (1, 16, 1, 10), (8, 1, 1, 1)]


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("bshape", BIAS_SHAPES, ids=str)
def test_broadcast_along_rows_matches_numpy(rng, op, bshape):
    a = rng.uniform(-2, 2, (8, 16, 9, 10)).astype(np.float32)
    b = (rng.uniform(0.5, 2, bshape) * rng.choice([-1, 1], bshape)).astype(np.float32)
    exe = GGMLBackend().lower(one_node(op, [a.shape, b.shape]), jit=False)
    out = exe.run({}, {"a0": a, "a1": b}, {})[0]["out"]
    want = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[op](a, b)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)


def test_a_per_channel_bias_is_repeated_along_rows():
    exe = GGMLBackend().lower(one_node("add", [(8, 16, 9, 10), (1, 16, 1, 1)]), jit=False)
    assert "REPEAT ADD" in exe.source  # rows of 9 * 10: one vector loop per row, not per element


def test_fast_call_agrees_with_run_and_falls_back_when_it_cannot_vouch(rng):
    exe = GGMLBackend().lower(mlp(batch=32, d_in=32, hidden=64, d_out=8), jit=False)
    p = mlp_params(rng, 32, 64, 8)
    x = rng.standard_normal((32, 32)).astype(np.float32)
    assert exe.fast_call(p, {"input": x}, {}) is None  # params not loaded yet
    first = exe.run(p, {"input": x}, {})[0]["output"]
    fast = exe.fast_call(p, {"input": x}, {})
    assert fast is not None
    np.testing.assert_array_equal(fast[0]["output"], first)
    p2 = dict(p, **{"l2.bias": p["l2.bias"] + 1})  # a new array object: the checked path loads it
    assert exe.fast_call(p2, {"input": x}, {}) is None
    assert exe.fast_call(p, {"input": x.astype(np.float64)}, {}) is None
    assert exe.fast_call(p, {"input": x[:16]}, {}) is None
    assert exe.fast_call(p, {"input": x, "extra": x}, {}) is None


def test_evaluate_takes_the_fast_call_and_still_checks_new_inputs(rng):
    import mithril as ml
    from mithril.models import Linear, Model, Relu

    model = Model()
    model |= Linear(dimension=64)
    model += Relu()
    model += Linear(dimension=10)
    pm = ml.compile(model, GGMLBackend(), shapes={"input": [64, 20]}, static_inference=True)
    params = pm.randomize_params(seed=0)
    x = rng.standard_normal((64, 20)).astype(np.float32)
    a = pm.evaluate(params, {"input": x})["output"]
    b = pm.evaluate(params, {"input": x})["output"]
    np.testing.assert_array_equal(a, b)
    ref = np.maximum(x @ params["linear_0.weight"].T + params["linear_0.bias"], 0)
    ref = ref @ params["linear_1.weight"].T + params["linear_1.bias"]
    np.testing.assert_allclose(b, ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(EvaluationError):
        pm.evaluate(params, {"input": x.astype(np.float64)})
