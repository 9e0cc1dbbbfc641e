"""int8 / int4 weights: accuracy, which weights are quantized, quantize-once caching."""

from __future__ import annotations

import numpy as np
import pytest
from graphs import cnn, inp, mlp, param, random_params

import mithril_ggml.executable as executable_module
from mithril.errors import ParamsError
from mithril.ir.graph import Graph, GraphBuilder
from mithril_ggml import GGMLBackend
from mithril_ggml.weights import QUANT_TYPES


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def outputs(graph, params, x, quantize):
    exe = GGMLBackend(quantize=quantize, n_threads=2).lower(graph, jit=False)
    return exe, exe.run(params, {"input": x}, {})[0]["output"]


def test_int8_mlp_within_two_percent_of_float32(rng):
    g = mlp(batch=16, d_in=128, hidden=256, d_out=64)
    params = random_params(g, rng)
    x = rng.standard_normal((16, 128)).astype(np.float32)
    _, ref = outputs(g, params, x, None)
    exe, q8 = outputs(g, params, x, "int8")
    assert rel_err(q8, ref) < 0.02
    assert exe.quantization_report.quantized == {"l1.weight": "q8_0", "l2.weight": "q8_0"}
    assert set(exe.quantization_report.float32) == {"l1.bias", "l2.bias"}


def test_int4_is_coarser_but_close(rng):
    g = mlp(batch=16, d_in=128, hidden=256, d_out=64)
    params = random_params(g, rng)
    x = rng.standard_normal((16, 128)).astype(np.float32)
    _, ref = outputs(g, params, x, None)
    exe, q4 = outputs(g, params, x, "int4")
    assert rel_err(q4, ref) < 0.2
    assert set(exe.quantization_report.quantized.values()) == {"q4_0"}


def test_rows_not_multiple_of_block_stay_float32(rng):
    g = mlp(batch=4, d_in=20, hidden=64, d_out=10)  # l1 rows have 20 elements, l2 rows 64
    exe = GGMLBackend(quantize="int8").lower(g, jit=False)
    rep = exe.quantization_report
    assert rep.quantized == {"l2.weight": "q8_0"}
    assert "row length 20" in rep.float32["l1.weight"]
    assert "l1.weight" in str(rep) and "q8_0" in str(rep)


def test_direct_matmul_weight_is_stored_transposed(rng):
    g = Graph()
    x, w = inp(g, "input", (5, 64)), param(g, "w", (64, 32))
    g.outputs["output"] = GraphBuilder(g, where="m").emit("matmul", x, w)
    params = {"w": rng.standard_normal((64, 32)).astype(np.float32)}
    xv = rng.standard_normal((5, 64)).astype(np.float32)
    exe, q8 = outputs(g, params, xv, "int8")
    assert exe.weight_plans["w"].layout == "transposed"
    assert exe.weight_plans["w"].stored_shape == (32, 64)
    assert rel_err(q8, xv @ params["w"]) < 0.02


def test_conv_weights_are_quantized(rng):
    g = cnn()
    params = random_params(g, rng)
    x = rng.standard_normal((2, 8, 8, 8)).astype(np.float32)
    _, ref = outputs(g, params, x, None)
    exe, q8 = outputs(g, params, x, "int8")
    assert exe.quantization_report.quantized == {"conv.weight": "q8_0", "fc.weight": "q8_0"}
    assert exe.weight_plans["conv.weight"].stored_shape == (16, 32)
    assert rel_err(q8, ref) < 0.02


def test_params_are_quantized_once_per_array_object(rng, monkeypatch):
    g = mlp(batch=4, d_in=64, hidden=64, d_out=32)
    params = random_params(g, rng)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    exe = GGMLBackend(quantize="int8", n_threads=2).lower(g, jit=False)
    calls: list[str] = []
    real = executable_module.quantize_into
    monkeypatch.setattr(
        executable_module, "quantize_into", lambda plan, *a: (calls.append(plan.name), real(plan, *a))[1]
    )
    first = exe.run(params, {"input": x}, {})[0]["output"]
    assert sorted(calls) == sorted(params)
    calls.clear()
    again = exe.run(params, {"input": x}, {})[0]["output"]
    assert calls == []
    np.testing.assert_array_equal(first, again)
    # a different array object is loaded (and quantized) again
    new = dict(params, **{"l1.weight": params["l1.weight"] * 2})
    changed = exe.run(new, {"input": x}, {})[0]["output"]
    assert calls == ["l1.weight"]
    assert not np.allclose(changed, first)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantized_executable_reports_memory_saving(mode, rng):
    g = mlp(batch=1, d_in=256, hidden=256, d_out=256)
    f32 = GGMLBackend().lower(g, jit=False)
    q = GGMLBackend(quantize=mode).lower(g, jit=False)
    assert q.memory_bytes < f32.memory_bytes * (0.5 if mode == "int8" else 0.35)


def test_report_is_a_mapping_for_summaries():
    exe = GGMLBackend(quantize="int8").lower(mlp(batch=2, d_in=20, hidden=64, d_out=8), jit=False)
    rep = exe.quantization_report
    assert dict(rep) == {
        "l2.weight": "q8_0",
        "l1.weight": "float32 (row length 20 is not a multiple of the 32-element block)",
        "l1.bias": "float32 (used by add, not only as a matrix-product weight)",
        "l2.bias": "float32 (used by add, not only as a matrix-product weight)",
    }


def rgb_conv(batch: int = 2, padding: int = 1) -> Graph:
    """conv(3 -> 16, 3x3): rows of 3*3*3 = 27 elements, not a multiple of the 32-element block."""
    g = Graph()
    x = inp(g, "input", (batch, 3, 10, 9))
    w = param(g, "conv.weight", (16, 3, 3, 3))
    g.outputs["output"] = GraphBuilder(g, where="net.conv").emit("conv2d", x, w, padding=(padding, padding))
    return g


@pytest.mark.parametrize("mode,tolerance", [("int8", 0.02), ("int4", 0.2)])
def test_conv_rows_are_zero_padded_to_the_block_and_quantized(mode, tolerance, rng):
    torch = pytest.importorskip("torch")
    g = rgb_conv()
    params = random_params(g, rng)
    x = rng.standard_normal((2, 3, 10, 9)).astype(np.float32)
    _, ref = outputs(g, params, x, None)
    exe, q = outputs(g, params, x, mode)
    plan = exe.weight_plans["conv.weight"]
    assert (plan.layout, plan.stored_shape, plan.type_name) == ("conv_rows", (16, 32), QUANT_TYPES[mode])
    want = torch.nn.functional.conv2d(
        torch.tensor(x, dtype=torch.float64), torch.tensor(params["conv.weight"], dtype=torch.float64), padding=1
    ).numpy()
    assert rel_err(ref, want) < 1e-6  # float32 storage is exact to float32
    assert rel_err(q, ref) < tolerance and rel_err(q, want) < tolerance


def test_padded_conv_weights_survive_gguf(tmp_path, rng):
    from mithril_ggml import load_gguf, save_gguf

    g = rgb_conv()
    params = random_params(g, rng)
    x = {"input": rng.standard_normal((2, 3, 10, 9)).astype(np.float32)}
    exe = GGMLBackend(quantize="int8").lower(g, jit=False)
    want = exe.run(params, x, {})[0]["output"]
    save_gguf(exe, tmp_path / "conv.gguf")
    np.testing.assert_array_equal(load_gguf(tmp_path / "conv.gguf").evaluate(x)["output"], want)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_padded_conv_refuses_non_finite_weights(bad, rng):
    g = rgb_conv()
    params = random_params(g, rng)
    params["conv.weight"][5, 2, 1, 0] = bad
    exe = GGMLBackend(quantize="int8").lower(g, jit=False)
    with pytest.raises(ParamsError, match=r"'conv.weight' holds (nan|inf) at \[5, 2, 1, 0\]"):
        exe.run(params, {"input": np.zeros((2, 3, 10, 9), np.float32)}, {})
