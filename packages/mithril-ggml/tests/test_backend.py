"""The backend object, plugin registration, the built-once graph and its memory."""

from __future__ import annotations

import numpy as np
from graphs import mlp, one_node, random_params

import mithril_ggml.executable as executable_module
from mithril.backend import Backend
from mithril.plugins.manager import MithrilPluginManager
from mithril_ggml import GGMLBackend, GGMLExecutable
from mithril_ggml._lib import ggml


def test_is_a_backend_with_numpy_arrays():
    b = GGMLBackend(n_threads=3)
    assert isinstance(b, Backend) and b.name == "ggml" and b.n_threads == 3
    assert GGMLBackend().n_threads >= 1
    assert b.core_kernels() == {}
    assert b.differentiates_natively
    b.seed(7)
    first = b.randn(2, 3)
    b.seed(7)
    np.testing.assert_array_equal(first, b.randn(2, 3))
    assert first.dtype == np.float32 and b.is_array(first) and not b.is_array([1.0])
    assert b.array([1.0, 2.0]).dtype == np.float32
    assert b.zeros(2).dtype == np.float32 and b.ones(2, 2).shape == (2, 2)
    assert b.to_numpy(first) is not first
    np.testing.assert_allclose(b.softmax(np.zeros(4)), 0.25)
    assert b.mean(np.ones((2, 3)), axis=0).shape == (3,)


def test_plugin_registers_the_backend():
    import mithril_ggml.plugin as plugin

    pm = MithrilPluginManager()
    pm._loaded = True  # in-process only: do not scan installed entry points
    info = pm.register(plugin, name="ggml")
    assert info.backends == ("ggml",)
    assert pm.backend_class("ggml") is GGMLBackend
    assert plugin.MITHRIL_PLUGIN_API == 1


def test_graph_is_built_once_and_reused(monkeypatch, rng):
    g = mlp(batch=4, d_in=32, hidden=32, d_out=8)
    exe = GGMLBackend(n_threads=2).lower(g, jit=False)
    assert isinstance(exe, GGMLExecutable)
    monkeypatch.setattr(executable_module, "build", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    params = random_params(g, rng)
    for _ in range(3):
        x = rng.standard_normal((4, 32)).astype(np.float32)
        out = exe.run(params, {"input": x}, {})[0]["output"]
        h = np.maximum(x @ params["l1.weight"].T + params["l1.bias"], 0)
        np.testing.assert_allclose(out, h @ params["l2.weight"].T + params["l2.bias"], rtol=1e-5, atol=1e-5)


def test_context_size_is_exactly_what_the_graph_needs():
    for q in (None, "int8"):
        exe = GGMLBackend(quantize=q).lower(mlp(batch=8, d_in=64, hidden=128, d_out=32), jit=False)
        used = ggml().ggml_used_mem(exe._built.ctx)
        assert used == exe.memory_bytes
        assert exe._built.data_bytes < exe.memory_bytes


def test_source_lists_ggml_ops_per_node_and_can_be_written(tmp_path):
    path = tmp_path / "graph.txt"
    exe = GGMLBackend(quantize="int8").lower(mlp(), jit=False, source_path=str(path))
    assert "MUL_MAT" in exe.source and "model.l1" in exe.source and "q8_0" in exe.source
    assert "folded: its matmul reads the source directly" in exe.source
    assert path.read_text().strip() == exe.source


def test_outputs_are_copies_and_close_frees(rng):
    exe = GGMLBackend().lower(one_node("mul", [(3,), 2.0]), jit=False)
    a = exe.run({}, {"a0": np.ones(3, np.float32)}, {})[0]["out"]
    b = exe.run({}, {"a0": np.full(3, 5.0, np.float32)}, {})[0]["out"]
    np.testing.assert_array_equal(a, [2, 2, 2])
    np.testing.assert_array_equal(b, [10, 10, 10])
    exe.close()
    import pytest

    from mithril.errors import EvaluationError

    with pytest.raises(EvaluationError, match="closed"):
        exe.run({}, {"a0": np.ones(3, np.float32)}, {})


def test_follows_the_executable_protocol_with_state(rng):
    from mithril.ir.graph import Graph, GraphBuilder, Value, ValueRole
    from mithril.physical.executable import Executable

    g = Graph()
    x = Value(ValueRole.INPUT, name="input", kind="float", shape=(4, 3))
    mean = Value(ValueRole.STATE, name="bn.running_mean", kind="float", shape=(3,))
    g.inputs["input"], g.state["bn.running_mean"] = x, mean
    b = GraphBuilder(g, where="bn")
    g.outputs["output"] = b.emit("sub", x, mean)
    g.state_updates["bn.running_mean"] = b.emit("mean", x, axis=(0,))
    exe = GGMLBackend().lower(g, jit=False)
    assert isinstance(exe, Executable)
    xv, mv = rng.standard_normal((4, 3)).astype(np.float32), np.ones(3, np.float32)
    for params, inputs in [({"bn.running_mean": mv}, {"input": xv}), ({}, {"input": xv, "bn.running_mean": mv})]:
        out, grads, updates = exe.run(params, inputs, {})
        np.testing.assert_allclose(out["output"], xv - mv)
        np.testing.assert_allclose(updates["bn.running_mean"], xv.mean(0), rtol=1e-6)
        assert grads == {}
