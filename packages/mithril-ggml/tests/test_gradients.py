"""Gradients through ggml's own backward pass, against torch autograd.

Each case runs in a child process: a ggml abort fails that case only.
"""

from __future__ import annotations

import numpy as np
import pytest
from grad_cases import CASES, ggml_gradients, make_data
from graphs import inp, mlp, param, random_params
from isolate import run_isolated

from mithril.errors import UnsupportedError
from mithril.ir.graph import Graph, GraphBuilder
from mithril_ggml import GGMLBackend

torch = pytest.importorskip("torch")
F = torch.nn.functional

ACTS = {"relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def _mlp(act):
    def fn(p, i):
        h = ACTS[act](i["input"] @ p["l1.weight"].T + p["l1.bias"])
        return h @ p["l2.weight"].T + p["l2.bias"]

    return fn


def _mixed(p, i):
    h = F.leaky_relu(F.gelu(i["input"] @ p["w"], approximate="tanh"), 0.2)
    h = (h - p["s"]) / (p["s"] * p["s"] + 1)
    h = torch.softmax(h, -1) + torch.log_softmax(h, 0)
    return h.mean(1, keepdim=True) * p["s"].sum()


def _cnn(p, i):
    h = F.relu(F.conv2d(i["input"], p["conv.weight"], padding=1) + p["conv.bias"])
    return F.max_pool2d(h, 2, 2).flatten(1) @ p["fc.weight"].T


REFERENCES = {
    **{f"mlp_{a}": _mlp(a) for a in ACTS},
    "cnn": _cnn,
    "mixed_activations": _mixed,
    "pool_slice_matmul": lambda p, i: (F.avg_pool2d(i["input"], 2, 2)[:, :, 1:] @ p["w"]).permute(0, 2, 1, 3),
    "exp": lambda p, i: torch.exp(p["p0"]),
    "log": lambda p, i: torch.log(p["p0"]),
    "sqrt": lambda p, i: torch.sqrt(p["p0"]),
    "sin_cos": lambda p, i: torch.cos(torch.sin(p["p0"])),
    "abs_neg": lambda p, i: -torch.abs(p["p0"]),
    "sign_times_x": lambda p, i: torch.sign(p["p0"]) * p["p0"],
    "pow_2": lambda p, i: p["p0"] ** 2,
    "pow_3": lambda p, i: p["p0"] ** 3,
    "pow_-0.5": lambda p, i: p["p0"] ** -0.5,
    "pow_const_base": lambda p, i: 2.0 ** p["p0"],
    "maximum_bcast": lambda p, i: torch.maximum(p["p0"], p["p1"]),
    "minimum_bcast": lambda p, i: torch.minimum(p["p0"], p["p1"]),
    "sub_left_bcast": lambda p, i: p["p0"] - p["p1"],
    "div_both_bcast": lambda p, i: p["p0"] / p["p1"],
    "scalar_consts": lambda p, i: 2.0 / (3.0 - p["p0"] * 0.5),
    "sum_axes": lambda p, i: p["p0"].sum((0, 2)),
    "mean_all": lambda p, i: p["p0"].mean().reshape(1, 1),
    "softmax_axis0": lambda p, i: torch.softmax(p["p0"], 0),
    "log_softmax_axis1": lambda p, i: torch.log_softmax(p["p0"], 1),
    "transpose_chain": lambda p, i: (p["p0"] @ p["p1"].T).transpose(1, 2) @ p["p0"],
    "matmul_batched": lambda p, i: p["p0"] @ p["p1"],
    "matmul_left_bcast": lambda p, i: p["p0"] @ p["p1"],
    "matmul_4d_bcast": lambda p, i: p["p0"] @ p["p1"],
    "broadcast_to": lambda p, i: p["p0"].expand(2, 3, 4),
    "reshape_flatten": lambda p, i: p["p0"].reshape(24),
    "slice_strided": lambda p, i: p["p0"][1::2, 0:5:2],
    "conv_stride_dilation": lambda p, i: F.conv2d(p["p0"], p["p1"], stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
    "max_pool_padded": lambda p, i: F.max_pool2d(p["p0"], 3, 2, 1),
    "avg_pool_padded": lambda p, i: F.avg_pool2d(p["p0"], 3, 2, 1),
    "param_is_output": lambda p, i: p["p0"],
}


def test_every_case_has_a_reference():
    assert set(REFERENCES) == set(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_match_torch(name):
    params, inputs, cot = make_data(name)
    out, grads = run_isolated(ggml_gradients, name)
    tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    ti = {k: torch.tensor(v, dtype=torch.float64) for k, v in inputs.items()}
    y = REFERENCES[name](tp, ti)
    (y * torch.tensor(cot, dtype=torch.float64)).sum().backward()
    np.testing.assert_allclose(out, y.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert set(grads) == set(params)
    for k, t in tp.items():
        np.testing.assert_allclose(grads[k], t.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=k)


def _subset_case():
    g = mlp(batch=2, d_in=4, hidden=4, d_out=3)
    param(g, "unused", (2,))
    params = random_params(g, np.random.default_rng(0))
    x = {"input": np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)}
    exe = GGMLBackend().lower(g, jit=False, wrt=("l2.bias", "unused"))
    out, grads, _ = exe.run(params, x, {"output": np.ones((2, 3), np.float32)})
    out2, grads2, _ = exe.run(params, x, {})
    return out["output"], grads, out2["output"], grads2


def test_subset_missing_cotangent_and_unused_param():
    out, grads, out2, grads2 = run_isolated(_subset_case)
    np.testing.assert_allclose(grads["l2.bias"], [2.0, 2.0, 2.0], rtol=1e-6)
    np.testing.assert_array_equal(grads["unused"], np.zeros(2))
    assert grads2 == {}  # without cotangents the same executable only evaluates
    np.testing.assert_array_equal(out, out2)


def test_ops_without_backward_are_named_before_ggml_is_called():
    g = Graph()
    x, w = inp(g, "input", (3, 4)), param(g, "w", (4, 4))
    b = GraphBuilder(g, where="net.head")
    h = b.emit("matmul", x, w)
    h = b.emit("concat", h, h, axis=1)
    b.where = "net.pool"
    h = b.emit("max", h, axis=(1,), keepdims=False)
    b.where = "net.act"
    g.outputs["output"] = b.emit("gelu", h)
    with pytest.raises(UnsupportedError) as e:
        GGMLBackend().lower(g, jit=False, wrt=("w",))
    msg = str(e.value)
    for what in ("'concat'", "'net.head'", "'max'", "'net.pool'", "'gelu'", "'net.act'"):
        assert what in msg
    GGMLBackend().lower(g, jit=False)  # fine for inference


def test_quantized_backend_refuses_gradients():
    with pytest.raises(UnsupportedError, match="quantize"):
        GGMLBackend(quantize="int8").lower(mlp(), jit=False, wrt=("l1.weight",))
