"""Unsupported primitives are reported by name and block, in Python, before ggml is called."""

from __future__ import annotations

import numpy as np
import pytest
from graphs import inp, one_node, param
from isolate import run_isolated

import mithril_ggml.executable as executable_module
from mithril.errors import EvaluationError, MissingInputError, UnsupportedError
from mithril.ir.graph import Graph, GraphBuilder
from mithril_ggml import GGMLBackend


def unsupported_graph() -> Graph:
    g = Graph()
    x = inp(g, "input", (2, 4, 6, 6))
    w = param(g, "w", (4, 2, 3, 3))
    b = GraphBuilder(g, where="net.gate")
    mask = b.emit("greater", x, b.const(0.0))
    h = b.emit("where", mask, x, b.const(0.0))
    b.where = "net.act"
    h = b.emit("erf", h)
    b.where = "net.conv"
    h = b.emit("conv2d", h, w, groups=2, padding=(1, 1))
    b.where = "net.avg"
    h = b.emit("avg_pool2d", h, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), count_include_pad=False)
    b.where = "net.pool"
    h = b.emit("max_pool2d", h, kernel_size=(2, 2), stride=(1, 1), dilation=(2, 2))
    b.where = "net.pow"
    h = b.emit("pow", h, h)
    b.where = "net.big"
    g.outputs["output"] = b.emit("reshape", h, shape=(1, 2, 2, 2, -1))
    return g


def lower_unsupported_then_run_supported() -> tuple[str, list[float]]:
    """In a child process: the error, then proof the process still computes."""
    try:
        GGMLBackend().lower(unsupported_graph(), jit=False)
        msg = "no error"
    except UnsupportedError as e:
        msg = str(e)
    exe = GGMLBackend().lower(one_node("add", [(3,), (3,)]), jit=False)
    out, _, _ = exe.run({}, {"a0": np.ones(3, np.float32), "a1": np.ones(3, np.float32)}, {})
    return msg, out["out"].tolist()


def test_every_unsupported_primitive_is_named_with_its_block_without_crashing():
    msg, out = run_isolated(lower_unsupported_then_run_supported)
    assert out == [2.0, 2.0, 2.0]
    for prim, block in [("avg_pool2d", "net.avg"), ("max_pool2d", "net.pool"), ("reshape", "net.big")]:
        assert f"primitive {prim!r} in block {block!r}" in msg, (prim, msg)
    assert "count_include_pad" in msg and "rank 5" in msg
    for lowered in ("conv2d", "greater", "where", "erf", "pow"):  # grouped conv, compositions: lowered
        assert f"primitive {lowered!r}" not in msg, (lowered, msg)


def test_nothing_reaches_ggml_when_lowering_is_refused(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("ggml was called")

    monkeypatch.setattr(executable_module, "measure", boom)
    monkeypatch.setattr(executable_module, "build", boom)
    with pytest.raises(UnsupportedError, match="count_include_pad"):
        GGMLBackend().lower(unsupported_graph(), jit=False)


def test_non_float_inputs_and_used_int_results_are_refused():
    g = Graph()
    idx = inp(g, "idx", (3,), kind="int")
    x = inp(g, "x", (3, 4))
    b = GraphBuilder(g, where="m")
    am = b.emit("argmax", x, axis=(-1,))
    g.outputs["out"] = b.emit("add", am, idx)
    with pytest.raises(UnsupportedError) as e:
        GGMLBackend().lower(g, jit=False)
    assert "input 'idx'" in str(e.value) and "'argmax'" in str(e.value)


def test_bad_arguments_raise_mithril_errors_not_memory_corruption():
    exe = GGMLBackend().lower(one_node("add", [(3, 4), (4,)]), jit=False)
    with pytest.raises(EvaluationError, match="expected shape"):
        exe.run({}, {"a0": np.ones((4, 3), np.float32), "a1": np.ones(4, np.float32)}, {})
    with pytest.raises(MissingInputError):
        exe.run({}, {"a0": np.ones((3, 4), np.float32)}, {})
    g = Graph()
    x, w = inp(g, "x", (2, 3)), param(g, "w", (3, 3))
    g.outputs["y"] = GraphBuilder(g).emit("matmul", x, w)
    exe = GGMLBackend().lower(g, jit=False)
    with pytest.raises(EvaluationError, match="param 'w'"):
        exe.run({"w": np.ones((2, 2), np.float32)}, {"x": np.ones((2, 3), np.float32)}, {})
    with pytest.raises(MissingInputError, match="'w'"):
        exe.run({}, {"x": np.ones((2, 3), np.float32)}, {})


def test_backend_options_are_checked():
    with pytest.raises(UnsupportedError):
        GGMLBackend(quantize="int3")
    with pytest.raises(UnsupportedError):
        GGMLBackend(n_threads=0)
    with pytest.raises(UnsupportedError):
        GGMLBackend(device="cuda")
    import mithril.dtypes as dt

    with pytest.raises(UnsupportedError):
        GGMLBackend(dtype=dt.float64)
