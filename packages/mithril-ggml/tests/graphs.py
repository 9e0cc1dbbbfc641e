"""Graph builders and NumPy references shared by the tests."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mithril.ir.graph import Graph, GraphBuilder, Value, ValueRole


def inp(g: Graph, name: str, shape: Sequence[int], kind: str = "float") -> Value:
    v = Value(ValueRole.INPUT, name=name, kind=kind, shape=tuple(shape))
    g.inputs[name] = v
    return v


def param(g: Graph, name: str, shape: Sequence[int]) -> Value:
    v = Value(ValueRole.PARAM, name=name, kind="float", shape=tuple(shape))
    g.params[name] = v
    return v


def one_node(prim: str, shapes: Sequence[Sequence[int] | float], **attrs: Any) -> Graph:
    """``out = prim(a0, a1, ...)``; a number in ``shapes`` is a scalar constant."""
    g = Graph()
    b = GraphBuilder(g, where=f"test.{prim}")
    args = [b.const(s) if isinstance(s, (int, float)) else inp(g, f"a{i}", s) for i, s in enumerate(shapes)]
    g.outputs["out"] = b.emit(prim, *args, **attrs)
    return g


def mlp(batch: int = 8, d_in: int = 64, hidden: int = 64, d_out: int = 32, act: str = "relu") -> Graph:
    """Linear(hidden) -> act -> Linear(d_out), weights [out, in] used through a transpose."""
    g = Graph()
    x = inp(g, "input", (batch, d_in))
    w1, b1 = param(g, "l1.weight", (hidden, d_in)), param(g, "l1.bias", (hidden,))
    w2, b2 = param(g, "l2.weight", (d_out, hidden)), param(g, "l2.bias", (d_out,))
    b = GraphBuilder(g, where="model.l1")
    h = b.emit("add", b.emit("matmul", x, b.emit("transpose", w1, axes=(1, 0))), b1)
    b.where = "model.act"
    h = b.emit(act, h)
    b.where = "model.l2"
    g.outputs["output"] = b.emit("add", b.emit("matmul", h, b.emit("transpose", w2, axes=(1, 0))), b2)
    return g


def cnn(batch: int = 2) -> Graph:
    """conv(8->16, 3x3, pad 1) + bias -> relu -> maxpool 2 -> flatten -> linear(10)."""
    g = Graph()
    x = inp(g, "input", (batch, 8, 8, 8))
    w = param(g, "conv.weight", (16, 8, 2, 2))
    cb = param(g, "conv.bias", (1, 16, 1, 1))
    fw = param(g, "fc.weight", (10, 16 * 4 * 4))
    b = GraphBuilder(g, where="cnn.conv")
    h = b.emit("add", b.emit("conv2d", x, w, padding=(1, 1)), cb)  # (B, 16, 9, 9)
    b.where = "cnn.relu"
    h = b.emit("relu", h)
    b.where = "cnn.pool"
    h = b.emit("max_pool2d", h, kernel_size=(2, 2), stride=(2, 2))  # (B, 16, 4, 4)
    b.where = "cnn.flatten"
    h = b.emit("flatten", h)
    b.where = "cnn.fc"
    g.outputs["output"] = b.emit("matmul", h, b.emit("transpose", fw, axes=(1, 0)))
    return g


def random_params(g: Graph, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        k: (rng.standard_normal(v.shape) / math.sqrt(max(v.shape[-1], 1))).astype(np.float32)
        for k, v in g.params.items()
    }


# ---------------------------------------------------------------- references
def conv2d_ref(x: np.ndarray, w: np.ndarray, stride=(1, 1), padding=(0, 0), dilation=(1, 1)) -> np.ndarray:
    x = x.astype(np.float64)
    w = w.astype(np.float64)
    n, _c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[
                :,
                :,
                i * dilation[0] : i * dilation[0] + stride[0] * oh : stride[0],
                j * dilation[1] : j * dilation[1] + stride[1] * ow : stride[1],
            ]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out


def pool2d_ref(x: np.ndarray, op: str, kernel, stride, padding=(0, 0)) -> np.ndarray:
    fill = -np.inf if op == "max" else 0.0
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2), constant_values=fill)
    _n, _c, h, w = x.shape
    oh = (h + 2 * padding[0] - kernel[0]) // stride[0] + 1
    ow = (w + 2 * padding[1] - kernel[1]) // stride[1] + 1
    win = np.stack(
        [
            xp[:, :, i : i + stride[0] * oh : stride[0], j : j + stride[1] * ow : stride[1]]
            for i in range(kernel[0])
            for j in range(kernel[1])
        ]
    )
    return win.max(0) if op == "max" else win.mean(0)


def gelu_ref(x: np.ndarray, approximate: str) -> np.ndarray:
    x = x.astype(np.float64)
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def softmax_ref(x: np.ndarray, axis: int) -> np.ndarray:
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)
