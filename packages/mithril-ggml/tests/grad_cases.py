"""Graphs differentiated by ggml's backward pass in test_gradients (built in a child process too)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from graphs import cnn, inp, mlp, param

from mithril.ir.graph import Graph, GraphBuilder


def _single(shapes: list[tuple[int, ...]], body: Callable) -> Callable[[], Graph]:
    """A graph whose params p0, p1, ... feed ``body(builder, params) -> output``."""

    def make() -> Graph:
        g = Graph()
        b = GraphBuilder(g, where="case")
        ps = [param(g, f"p{i}", s) for i, s in enumerate(shapes)]
        g.outputs["output"] = body(b, ps)
        return g

    return make


def _mixed() -> Graph:
    g = Graph()
    x = inp(g, "input", (3, 6))
    w, s = param(g, "w", (6, 6)), param(g, "s", (6,))
    b = GraphBuilder(g, where="m")
    h = b.emit("matmul", x, w)
    h = b.emit("gelu", h, approximate="tanh")
    h = b.emit("leaky_relu", h, slope=0.2)
    h = b.emit("div", b.emit("sub", h, s), b.emit("add", b.emit("mul", s, s), b.const(1.0)))
    h = b.emit("add", b.emit("softmax", h, axis=-1), b.emit("log_softmax", h, axis=0))
    h = b.emit("mean", h, axis=(1,), keepdims=True)
    g.outputs["output"] = b.emit("mul", h, b.emit("sum", s, axis=None))
    return g


def _pool_slice_matmul() -> Graph:
    g = Graph()
    x = inp(g, "input", (2, 3, 6, 6))
    w = param(g, "w", (3, 5))
    b = GraphBuilder(g, where="m")
    h = b.emit("avg_pool2d", x, kernel_size=(2, 2), stride=(2, 2))
    h = b.emit("slice", h, starts=(None, None, 1), stops=(None, None, None), steps=(None, None, 1))
    h = b.emit("matmul", h, w)
    g.outputs["output"] = b.emit("transpose", h, axes=(0, 2, 1, 3))
    return g


def _e(prim: str, **attrs):
    return lambda b, p: b.emit(prim, *p, **attrs)


#: name -> (graph builder, params must be positive)
CASES: dict[str, tuple[Callable[[], Graph], bool]] = {
    "mlp_relu": (lambda: mlp(4, 16, 24, 8, "relu"), False),
    "mlp_sigmoid": (lambda: mlp(4, 16, 24, 8, "sigmoid"), False),
    "mlp_tanh": (lambda: mlp(4, 16, 24, 8, "tanh"), False),
    "cnn": (cnn, False),
    "mixed_activations": (_mixed, False),
    "pool_slice_matmul": (_pool_slice_matmul, False),
    "exp": (_single([(3, 4)], _e("exp")), False),
    "log": (_single([(3, 4)], _e("log")), True),
    "sqrt": (_single([(3, 4)], _e("sqrt")), True),
    "sin_cos": (_single([(3, 4)], lambda b, p: b.emit("cos", b.emit("sin", p[0]))), False),
    "abs_neg": (_single([(3, 4)], lambda b, p: b.emit("neg", b.emit("abs", p[0]))), False),
    "sign_times_x": (_single([(3, 4)], lambda b, p: b.emit("mul", b.emit("sign", p[0]), p[0])), False),
    "pow_2": (_single([(3, 4)], lambda b, p: b.emit("pow", p[0], b.const(2.0))), False),
    "pow_3": (_single([(3, 4)], lambda b, p: b.emit("pow", p[0], b.const(3.0))), False),
    "pow_-0.5": (_single([(3, 4)], lambda b, p: b.emit("pow", p[0], b.const(-0.5))), True),
    "pow_const_base": (_single([(3, 4)], lambda b, p: b.emit("pow", b.const(2.0), p[0])), False),
    "maximum_bcast": (_single([(3, 4), (4,)], _e("maximum")), False),
    "minimum_bcast": (_single([(3, 1), (1, 4)], _e("minimum")), False),
    "sub_left_bcast": (_single([(4,), (3, 4)], _e("sub")), False),
    "div_both_bcast": (_single([(3, 1), (1, 4)], _e("div")), True),
    "scalar_consts": (
        _single(
            [(3, 4)],
            lambda b, p: b.emit("div", b.const(2.0), b.emit("sub", b.const(3.0), b.emit("mul", p[0], b.const(0.5)))),
        ),
        True,
    ),
    "sum_axes": (_single([(3, 4, 5)], _e("sum", axis=(0, 2), keepdims=False)), False),
    "mean_all": (_single([(3, 4)], _e("mean", axis=None, keepdims=True)), False),
    "softmax_axis0": (_single([(3, 4, 5)], _e("softmax", axis=0)), False),
    "log_softmax_axis1": (_single([(3, 4, 5)], _e("log_softmax", axis=1)), False),
    "transpose_chain": (
        _single(
            [(2, 3, 4), (3, 4)],
            lambda b, p: b.emit(
                "matmul",
                b.emit("transpose", b.emit("matmul", p[0], b.emit("transpose", p[1], axes=(1, 0))), axes=(0, 2, 1)),
                p[0],
            ),
        ),
        False,
    ),
    "matmul_batched": (_single([(2, 3, 4), (2, 4, 5)], _e("matmul")), False),
    "matmul_left_bcast": (_single([(3, 4), (2, 4, 5)], _e("matmul")), False),
    "matmul_4d_bcast": (_single([(2, 1, 3, 4), (3, 4, 2)], _e("matmul")), False),
    "broadcast_to": (_single([(3, 1)], _e("broadcast_to", shape=(2, 3, 4))), False),
    "reshape_flatten": (
        _single([(2, 3, 4)], lambda b, p: b.emit("flatten", b.emit("reshape", p[0], shape=(4, 6)), start_axis=0)),
        False,
    ),
    "slice_strided": (_single([(6, 5)], _e("slice", starts=(1, 0), stops=(None, 5), steps=(2, 2))), False),
    "conv_stride_dilation": (
        _single([(2, 3, 9, 8), (4, 3, 3, 2)], _e("conv2d", stride=(2, 1), padding=(1, 2), dilation=(1, 2))),
        False,
    ),
    "max_pool_padded": (
        _single([(2, 3, 9, 8)], _e("max_pool2d", kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))),
        False,
    ),
    "avg_pool_padded": (
        _single([(2, 3, 9, 8)], _e("avg_pool2d", kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))),
        False,
    ),
    "param_is_output": (_single([(3, 4)], lambda b, p: p[0]), False),
}


def make_data(name: str, seed: int = 0):
    """(params, inputs, cotangent) for a case."""
    rng = np.random.default_rng(seed)
    build, positive = CASES[name]
    g = build()
    params = {
        k: (rng.uniform(0.5, 2.0, v.shape) if positive else rng.standard_normal(v.shape) * 0.5).astype(np.float32)
        for k, v in g.params.items()
    }
    inputs = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in g.inputs.items()}
    cot = rng.standard_normal(g.outputs["output"].shape).astype(np.float32)
    return params, inputs, cot


def ggml_gradients(name: str):
    """Run in a child process: outputs and gradients of every param, from ggml's backward pass."""
    from mithril_ggml import GGMLBackend

    g = CASES[name][0]()
    params, inputs, cot = make_data(name)
    exe = GGMLBackend(n_threads=2).lower(g, jit=False, wrt=tuple(g.params))
    out, grads, _ = exe.run(params, inputs, {"output": cot})
    return out["output"], grads
