"""GGUF export of a compiled inference executable and loading it back."""

from __future__ import annotations

import numpy as np
import pytest
from graphs import cnn, inp, mlp, random_params

from mithril.ir.graph import Graph, GraphBuilder
from mithril_ggml import GGMLBackend, GGUFError, load_gguf, save_gguf
from mithril_ggml._lib import ggml


@pytest.mark.parametrize("quantize", [None, "int8", "int4"])
@pytest.mark.parametrize("make,shape", [(mlp, (8, 64)), (cnn, (2, 8, 8, 8))], ids=["mlp", "cnn"])
def test_round_trip_gives_identical_outputs(make, shape, quantize, tmp_path, rng):
    g = make()
    params = random_params(g, rng)
    x = {"input": rng.standard_normal(shape).astype(np.float32)}
    exe = GGMLBackend(quantize=quantize, n_threads=3).lower(g, jit=False)
    want = exe.run(params, x, {})[0]["output"]
    path = tmp_path / "model.gguf"
    save_gguf(exe, path)
    model = load_gguf(path, n_threads=2)
    assert model.quantize == quantize
    np.testing.assert_array_equal(model.evaluate(x)["output"], want)
    assert model.executable.quantization_report == exe.quantization_report
    assert [n.primitive.name for n in model.graph.nodes] == [n.primitive.name for n in g.nodes]
    assert [n.where for n in model.graph.nodes] == [n.where for n in g.nodes]


def test_file_is_standard_gguf_with_quantized_tensors(tmp_path, rng):
    g = mlp()
    path = tmp_path / "m.gguf"
    save_gguf(g, path, random_params(g, rng), quantize="int8")
    lib = ggml()
    ctx = lib.gguf_init_from_file(str(path).encode(), lib.gguf_init_params(no_alloc=True, ctx=None))
    try:
        types = {
            lib.gguf_get_tensor_name(ctx, i).decode(): lib.gguf_get_tensor_type(ctx, i)
            for i in range(lib.gguf_get_n_tensors(ctx))
        }
        arch = lib.gguf_get_val_str(ctx, lib.gguf_find_key(ctx, b"general.architecture"))
    finally:
        lib.gguf_free(ctx)
    assert arch == b"mithril"
    assert sorted(types.values()) == sorted([lib.GGML_TYPE_Q8_0] * 2 + [lib.GGML_TYPE_F32] * 2)


def test_constant_arrays_and_scalars_survive(tmp_path, rng):
    g = Graph()
    x = inp(g, "input", (3, 4))
    b = GraphBuilder(g, where="m")
    scale = b.const(np.arange(4, dtype=np.float32) + 1)
    g.outputs["output"] = b.emit("add", b.emit("mul", x, scale), b.const(0.5))
    exe = GGMLBackend().lower(g, jit=False)
    xv = {"input": rng.standard_normal((3, 4)).astype(np.float32)}
    want = exe.run({}, xv, {})[0]["output"]
    save_gguf(exe, tmp_path / "c.gguf")
    np.testing.assert_array_equal(load_gguf(tmp_path / "c.gguf").evaluate(xv)["output"], want)


def test_errors(tmp_path, rng):
    with pytest.raises(GGUFError, match="no file"):
        load_gguf(tmp_path / "missing.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(GGUFError, match="not a valid GGUF"):
        load_gguf(bad)
    g = mlp()
    with pytest.raises(GGUFError, match="params are required"):
        save_gguf(g, tmp_path / "x.gguf")
    exe = GGMLBackend().lower(g, jit=False)
    with pytest.raises(Exception, match="never loaded"):
        save_gguf(exe, tmp_path / "x.gguf")
