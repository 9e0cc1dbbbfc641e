"""A seeded graph fuzzer (issue 19): random logical models over the primitive set, run on every
installed backend and compared with NumPy in float64.

A graph is a JSON-able *spec* (``{"inputs": [shape, ...], "ops": [[op, [value, ...], attrs], ...],
"outputs": [value, ...]}``): values ``0..len(inputs)-1`` are the inputs (each scaled by a param of
its shape, so that every op lies on a path from a param and its gradient is checked), value
``len(inputs) + i`` is the output of op ``i``. :func:`generate` draws one from a seed; :func:`build`
makes the logical model; :func:`check` runs it:

* NumPy float64 is the oracle: forward and the gradients of every param for random output gradients;
* PyTorch and JAX in float64 (the core's autodiff, and every 4th graph also their native autodiff,
  ``autodiff="torch"``/``"jax"``) must agree to 1e-8 relative;
* GGML runs inference in float32 and must agree to a float32 tolerance, or raise UnsupportedError
  whose every line names the primitive and its block (recorded: the fraction of graphs GGML runs and
  agrees on is its *coverage*; the report groups the rest by primitive and reason).

:func:`minimise` shrinks a failing spec (drops outputs and ops, shrinks shapes) to a small case for
tests/reliability/test_fuzzer_regressions.py. ``python tests/reliability/fuzz.py --graphs N --seed S``
(``nox -s fuzz``) runs a long batch and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import mithril as ml
from mithril.errors import UnsupportedError
from mithril.models import IOKey, Linear, Model
from mithril.models.layers import BatchNorm2d, Conv2d
from mithril.models.primitive_blocks import AvgPool2d, MaxPool2d
from mithril.models.zoo import (
    GRU,
    LSTM,
    AdaptiveAvgPool2d,
    BatchNorm1d,
    Conv1d,
    ConvTranspose2d,
    GroupNorm,
    LayerNorm,
    MaxPool1d,
    MultiHeadAttention,
    RMSNorm,
)

Shape = tuple[int, ...]
Spec = dict[str, Any]

#: float64 backends must agree with NumPy to this relative tolerance (of the output's scale)
RTOL64 = 1e-8
#: GGML (float32) must agree with NumPy float64 to this
RTOL32 = 2e-4


# ====================================================================== ops
@dataclass(frozen=True)
class Op:
    """One kind of node: how many operands, what it applies to, its output shape, how it is built."""

    name: str
    arity: int
    #: (rng, operand shapes) -> attrs, or None when the op does not apply to these operands
    draw: Callable[[np.random.Generator, list[Shape]], dict[str, Any] | None]
    shape: Callable[[list[Shape], dict[str, Any]], Shape]
    build: Callable[[Model, list[Any], dict[str, Any], str], Any]
    weight: float = 1.0


OPS: dict[str, Op] = {}


def op(name: str, arity: int, draw: Any, shape: Any, build: Any, weight: float = 1.0) -> None:
    OPS[name] = Op(name, arity, draw, shape, build, weight)


def _same(shapes: list[Shape], attrs: dict[str, Any]) -> Shape:
    return shapes[0]


def _always(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any]:
    return {}


def _unary(prim: str, **attrs: Any) -> Callable[[Model, list[Any], dict[str, Any], str], Any]:
    return lambda m, xs, a, tag: m.call(prim, xs[0], **attrs)


for _name in ("relu", "sigmoid", "tanh", "abs", "neg", "sin", "cos"):
    op(_name, 1, _always, _same, _unary(_name))
op("gelu", 1, _always, _same, _unary("gelu"))
op("gelu_tanh", 1, _always, _same, _unary("gelu", approximate="tanh"))
op("leaky_relu", 1, _always, _same, _unary("leaky_relu", slope=0.1))
op("erf", 1, _always, _same, _unary("erf"), weight=0.5)
op("exp_tanh", 1, _always, _same, lambda m, xs, a, t: m.call("exp", m.call("tanh", xs[0])))
op("log_abs", 1, _always, _same, lambda m, xs, a, t: m.call("log", m.call("add", m.call("abs", xs[0]), 1.0)))
op("sqrt_abs", 1, _always, _same, lambda m, xs, a, t: m.call("sqrt", m.call("add", m.call("abs", xs[0]), 0.25)))
op("square", 1, _always, _same, lambda m, xs, a, t: m.call("mul", xs[0], xs[0]))
op(
    "pow_const",
    1,
    lambda r, s: {"p": float(r.choice([2.0, 3.0, 0.5]))},
    _same,
    lambda m, xs, a, t: m.call("pow", m.call("add", m.call("abs", xs[0]), 0.5), a["p"]),
)
op(
    "scale",
    1,
    lambda r, s: {"c": float(np.round(r.uniform(-2, 2), 3))},
    _same,
    lambda m, xs, a, t: m.call("mul", xs[0], a["c"]),
)


def _broadcast(a: Shape, b: Shape) -> Shape | None:
    out = []
    for x, y in zip(reversed((1,) * (len(b) - len(a)) + a), reversed((1,) * (len(a) - len(b)) + b)):
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y))
    return tuple(reversed(out))


def _draw_binary(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    return {} if _broadcast(shapes[0], shapes[1]) is not None else None


def _binary_shape(shapes: list[Shape], attrs: dict[str, Any]) -> Shape:
    out = _broadcast(shapes[0], shapes[1])
    assert out is not None
    return out


for _name in ("add", "sub", "mul", "maximum", "minimum"):
    op(_name, 2, _draw_binary, _binary_shape, lambda m, xs, a, t, p=_name: m.call(p, xs[0], xs[1]), weight=1.5)
op(
    "div_safe",
    2,
    _draw_binary,
    _binary_shape,
    lambda m, xs, a, t: m.call("div", xs[0], m.call("add", m.call("abs", xs[1]), 0.5)),
)
op(
    "pow_tensor",
    2,
    _draw_binary,
    _binary_shape,
    lambda m, xs, a, t: m.call("pow", m.call("add", m.call("abs", xs[0]), 0.5), m.call("tanh", xs[1])),
    weight=0.5,
)
op(
    "where_greater",
    2,
    _draw_binary,
    _binary_shape,
    lambda m, xs, a, t: m.call("where", m.call("greater", xs[0], xs[1]), xs[0], m.call("mul", xs[1], 0.5)),
    weight=0.5,
)


# reductions
def _draw_reduce(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if not s:
        return None
    k = int(rng.integers(1, len(s) + 1))
    axes = sorted(int(a) for a in rng.choice(len(s), size=k, replace=False))
    if rng.random() < 0.3:
        axes = [a - len(s) for a in axes]
    return {"axis": axes if rng.random() < 0.85 else None, "keepdims": bool(rng.random() < 0.4)}


def _reduce_shape(shapes: list[Shape], attrs: dict[str, Any]) -> Shape:
    (s,) = shapes
    axes = range(len(s)) if attrs["axis"] is None else [a % len(s) for a in attrs["axis"]]
    if attrs["keepdims"]:
        return tuple(1 if i in axes else d for i, d in enumerate(s))
    return tuple(d for i, d in enumerate(s) if i not in axes)


for _name in ("sum", "mean", "max", "min"):
    op(
        _name,
        1,
        _draw_reduce,
        _reduce_shape,
        lambda m, xs, a, t, p=_name: m.call(
            p, xs[0], axis=None if a["axis"] is None else tuple(a["axis"]), keepdims=a["keepdims"]
        ),
        weight=0.7,
    )


# softmax
def _draw_axis(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if not s:
        return None
    ax = int(rng.integers(0, len(s)))
    return {"axis": ax - len(s) if rng.random() < 0.5 else ax}


op("softmax", 1, _draw_axis, _same, lambda m, xs, a, t: m.call("softmax", xs[0], axis=a["axis"]))
op("log_softmax", 1, _draw_axis, _same, lambda m, xs, a, t: m.call("log_softmax", xs[0], axis=a["axis"]))


def _draw_layernorm(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if not s or s[-1] < 2:
        return None
    return {"affine": bool(rng.random() < 0.7)}


def _layernorm(m: Model, xs: list[Any], a: dict[str, Any], tag: str) -> Any:
    ln = LayerNorm(_last_dim[tag], elementwise_affine=a["affine"], name=tag)
    m |= ln(input=xs[0])
    return ln.output


_last_dim: dict[str, int] = {}  # filled by build() before each LayerNorm (its normalized_shape)
op("layernorm", 1, _draw_layernorm, _same, _layernorm, weight=0.5)


# matmul / linear
def _draw_linear(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if len(s) < 2:  # Mithril's matmul takes operands of rank >= 2 (a clear ShapeMismatchError otherwise)
        return None
    return {"dim": int(rng.integers(1, 7)), "bias": bool(rng.random() < 0.8)}


op(
    "linear",
    1,
    _draw_linear,
    lambda s, a: s[0][:-1] + (a["dim"],),
    lambda m, xs, a, t: _block(m, Linear(a["dim"], use_bias=a["bias"], name=t), xs[0]),
    weight=1.5,
)


def _draw_matmul_param(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if len(s) < 2:
        return None
    return {"n": int(rng.integers(1, 6)), "left": bool(rng.random() < 0.3)}


def _matmul_param_shape(shapes: list[Shape], a: dict[str, Any]) -> Shape:
    (s,) = shapes
    return s[:-2] + (a["n"], s[-1]) if a["left"] else s[:-1] + (a["n"],)


def _matmul_param(m: Model, xs: list[Any], a: dict[str, Any], tag: str) -> Any:
    s = _shapes_of[tag][0]
    if a["left"]:  # param [n, m] @ x [..., m, k]
        return m.call("matmul", IOKey(f"{tag}_w", shape=[a["n"], s[-2]], role="param"), xs[0])
    return m.call("matmul", xs[0], IOKey(f"{tag}_w", shape=[s[-1], a["n"]], role="param"))


op("matmul_param", 1, _draw_matmul_param, _matmul_param_shape, _matmul_param)


def _draw_matmul(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    a, b = shapes
    if len(a) < 2 or len(b) < 2 or a[-1] != b[-2] or _broadcast(a[:-2], b[:-2]) is None:
        return None
    return {}


def _matmul_shape(shapes: list[Shape], attrs: dict[str, Any]) -> Shape:
    a, b = shapes
    batch = _broadcast(a[:-2], b[:-2])
    assert batch is not None
    return batch + (a[-2], b[-1])


op("matmul", 2, _draw_matmul, _matmul_shape, lambda m, xs, a, t: m.call("matmul", xs[0], xs[1]), weight=2.0)


# structure
def _draw_transpose(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if len(s) < 2:
        return None
    return {"axes": None if rng.random() < 0.2 else [int(a) for a in rng.permutation(len(s))]}


def _transpose_shape(shapes: list[Shape], a: dict[str, Any]) -> Shape:
    (s,) = shapes
    return tuple(reversed(s)) if a["axes"] is None else tuple(s[i] for i in a["axes"])


op(
    "transpose",
    1,
    _draw_transpose,
    _transpose_shape,
    lambda m, xs, a, t: m.call("transpose", xs[0], axes=None if a["axes"] is None else tuple(a["axes"])),
)


def _draw_reshape(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    n = math.prod(s)
    dims: list[int] = []
    rest = n
    for _ in range(int(rng.integers(1, 4))):
        divisors = [d for d in range(1, rest + 1) if rest % d == 0]
        d = int(rng.choice(divisors))
        dims.append(d)
        rest //= d
    dims.append(rest)
    dims = [d for d in dims if d != 1] or [1]
    if rng.random() < 0.3 and len(dims) > 1:
        dims[int(rng.integers(0, len(dims)))] = -1
    return {"shape": dims}


def _reshape_shape(shapes: list[Shape], a: dict[str, Any]) -> Shape:
    n = math.prod(shapes[0])
    known = math.prod(d for d in a["shape"] if d != -1)
    return tuple(n // known if d == -1 else d for d in a["shape"])


op("reshape", 1, _draw_reshape, _reshape_shape, lambda m, xs, a, t: m.call("reshape", xs[0], shape=tuple(a["shape"])))


def _draw_flatten(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if len(s) < 2:
        return None
    start = int(rng.integers(0, len(s) - 1))
    end = int(rng.integers(start + 1, len(s)))
    return {"start": start, "end": end - len(s) if rng.random() < 0.5 else end}


def _flatten_shape(shapes: list[Shape], a: dict[str, Any]) -> Shape:
    (s,) = shapes
    start, end = a["start"], a["end"] % len(s)
    return s[:start] + (math.prod(s[start : end + 1]),) + s[end + 1 :]


op(
    "flatten",
    1,
    _draw_flatten,
    _flatten_shape,
    lambda m, xs, a, t: m.call("flatten", xs[0], start_axis=a["start"], end_axis=a["end"]),
    weight=0.7,
)


def _draw_unflatten(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    axes = [i for i, d in enumerate(s) if d > 1 and any(d % k == 0 for k in range(2, d))]
    if not axes:
        return None
    ax = int(rng.choice(axes))
    d = s[ax]
    k = int(rng.choice([k for k in range(2, d) if d % k == 0]))
    sizes = [k, d // k] if rng.random() < 0.6 else [k, -1]
    return {"axis": ax - len(s) if rng.random() < 0.3 else ax, "sizes": sizes}


def _unflatten_shape(shapes: list[Shape], a: dict[str, Any]) -> Shape:
    (s,) = shapes
    ax = a["axis"] % len(s)
    k = a["sizes"][0]
    return s[:ax] + (k, s[ax] // k) + s[ax + 1 :]


op(
    "unflatten",
    1,
    _draw_unflatten,
    _unflatten_shape,
    lambda m, xs, a, t: m.call("unflatten", xs[0], axis=a["axis"], sizes=tuple(a["sizes"])),
    weight=0.5,
)


def _draw_concat(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    a, b = shapes
    if not a or len(a) != len(b):
        return None
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    if len(diff) > 1:
        return None
    ax = diff[0] if diff else int(rng.integers(0, len(a)))
    return {"axis": ax - len(a) if rng.random() < 0.3 else ax}


def _concat_shape(shapes: list[Shape], attrs: dict[str, Any]) -> Shape:
    a, b = shapes
    ax = attrs["axis"] % len(a)
    return a[:ax] + (a[ax] + b[ax],) + a[ax + 1 :]


op("concat", 2, _draw_concat, _concat_shape, lambda m, xs, a, t: m.call("concat", xs[0], xs[1], axis=a["axis"]))


def _draw_slice(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if not s:
        return None
    n = int(rng.integers(1, len(s) + 1))
    starts, stops, steps = [], [], []
    for d in s[:n]:
        step = int(rng.choice([1, 1, 2, -1, -2])) if rng.random() < 0.7 else None
        lo = int(rng.integers(0, d))
        hi = int(rng.integers(lo + 1, d + 1))
        if step is not None and step < 0:
            lo, hi = hi - 1, (lo - 1 if lo > 0 else None)
        starts.append(lo if rng.random() < 0.8 else None)
        stops.append(hi if rng.random() < 0.8 else None)
        steps.append(step)
    return {"starts": starts, "stops": stops, "steps": steps}


def _slice_shape(shapes: list[Shape], a: dict[str, Any]) -> Shape:
    (s,) = shapes
    n = len(a["starts"])
    head = tuple(len(range(d)[slice(x, y, z)]) for d, x, y, z in zip(s, a["starts"], a["stops"], a["steps"]))
    return head + s[n:]


op(
    "slice",
    1,
    _draw_slice,
    _slice_shape,
    lambda m, xs, a, t: m.call(
        "slice", xs[0], starts=tuple(a["starts"]), stops=tuple(a["stops"]), steps=tuple(a["steps"])
    ),
)


# convolution and pooling (NCHW)
def _draw_conv(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if len(s) != 4:
        return None
    _n, c, h, w = s
    k = int(rng.integers(1, 4))
    pad = int(rng.integers(0, 2))
    dil = int(rng.choice([1, 1, 2]))
    if min(h, w) + 2 * pad < dil * (k - 1) + 1:
        return None
    groups = int(rng.choice([g for g in (1, 2, 3) if c % g == 0]))
    out = groups * int(rng.integers(1, 3))
    return {
        "out": out,
        "k": k,
        "stride": int(rng.choice([1, 1, 2])),
        "pad": pad,
        "dil": dil,
        "groups": groups,
        "bias": bool(rng.random() < 0.7),
    }


def _conv_shape(shapes: list[Shape], a: dict[str, Any]) -> Shape:
    n, _c, h, w = shapes[0]

    def size(d: int) -> int:
        return (d + 2 * a["pad"] - a["dil"] * (a["k"] - 1) - 1) // a["stride"] + 1

    return (n, a["out"], size(h), size(w))


def _conv(m: Model, xs: list[Any], a: dict[str, Any], tag: str) -> Any:
    c = _shapes_of[tag][0][1]
    conv = Conv2d(
        c,
        a["out"],
        a["k"],
        stride=a["stride"],
        padding=a["pad"],
        dilation=a["dil"],
        groups=a["groups"],
        bias=a["bias"],
        name=tag,
    )
    return _block(m, conv, xs[0])


op("conv2d", 1, _draw_conv, _conv_shape, _conv, weight=1.5)


def _draw_pool(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if len(s) != 4 or min(s[2:]) < 2:
        return None
    k = int(rng.integers(2, min(3, min(s[2:])) + 1))
    return {"k": k, "stride": int(rng.choice([1, k])), "pad": int(rng.integers(0, k // 2 + 1))}


def _pool_shape(shapes: list[Shape], a: dict[str, Any]) -> Shape:
    n, c, h, w = shapes[0]
    return (n, c, (h + 2 * a["pad"] - a["k"]) // a["stride"] + 1, (w + 2 * a["pad"] - a["k"]) // a["stride"] + 1)


op(
    "max_pool2d",
    1,
    _draw_pool,
    _pool_shape,
    lambda m, xs, a, t: _block(m, MaxPool2d(a["k"], stride=a["stride"], padding=a["pad"], name=t), xs[0]),
)
op(
    "avg_pool2d",
    1,
    _draw_pool,
    _pool_shape,
    lambda m, xs, a, t: _block(m, AvgPool2d(a["k"], stride=a["stride"], padding=a["pad"], name=t), xs[0]),
)


def _block(m: Model, block: Any, x: Any) -> Any:
    m |= block(input=x)
    return block.output


def _draw_conv_transpose(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if len(s) != 4:
        return None
    c = s[1]
    groups = int(rng.choice([g for g in (1, 2) if c % g == 0]))
    stride, dil = int(rng.choice([1, 2])), int(rng.choice([1, 1, 2]))
    k = int(rng.integers(1, 4))
    pad = int(rng.integers(0, 2))
    op_ = int(rng.integers(0, max(stride, dil)))
    out = groups * int(rng.integers(1, 3))
    size = [(d - 1) * stride - 2 * pad + dil * (k - 1) + op_ + 1 for d in s[2:]]
    if min(size) < 1 or max(size) > 16:
        return None
    return {
        "out": out,
        "k": k,
        "stride": stride,
        "pad": pad,
        "op": op_,
        "dil": dil,
        "groups": groups,
        "bias": bool(rng.random() < 0.7),
    }


def _conv_transpose_shape(shapes: list[Shape], a: dict[str, Any]) -> Shape:
    n, _c, h, w = shapes[0]
    size = [(d - 1) * a["stride"] - 2 * a["pad"] + a["dil"] * (a["k"] - 1) + a["op"] + 1 for d in (h, w)]
    return (n, a["out"], size[0], size[1])


def _conv_transpose(m: Model, xs: list[Any], a: dict[str, Any], tag: str) -> Any:
    c = _shapes_of[tag][0][1]
    block = ConvTranspose2d(
        c,
        a["out"],
        a["k"],
        stride=a["stride"],
        padding=a["pad"],
        output_padding=a["op"],
        dilation=a["dil"],
        groups=a["groups"],
        bias=a["bias"],
        name=tag,
    )
    return _block(m, block, xs[0])


op("conv_transpose2d", 1, _draw_conv_transpose, _conv_transpose_shape, _conv_transpose, weight=0.7)


def _draw_conv1d(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if len(s) != 3:
        return None
    k, pad, stride = int(rng.integers(1, 4)), int(rng.integers(0, 2)), int(rng.choice([1, 2]))
    if s[2] + 2 * pad < k:
        return None
    return {"out": int(rng.integers(1, 4)), "k": k, "stride": stride, "pad": pad}


op(
    "conv1d",
    1,
    _draw_conv1d,
    lambda sh, a: (sh[0][0], a["out"], (sh[0][2] + 2 * a["pad"] - a["k"]) // a["stride"] + 1),
    lambda m, xs, a, t: _block(
        m, Conv1d(_shapes_of[t][0][1], a["out"], a["k"], stride=a["stride"], padding=a["pad"], name=t), xs[0]
    ),
    weight=0.5,
)


def _draw_pool1d(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if len(s) != 3 or s[2] < 2:
        return None
    return {"k": 2, "stride": int(rng.choice([1, 2]))}


op(
    "max_pool1d",
    1,
    _draw_pool1d,
    lambda sh, a: sh[0][:2] + ((sh[0][2] - 2) // a["stride"] + 1,),
    lambda m, xs, a, t: _block(m, MaxPool1d(2, stride=a["stride"], name=t), xs[0]),
    weight=0.3,
)


def _draw_adaptive(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if len(s) != 4:
        return None
    return {"size": [int(rng.integers(1, s[2] + 2)), int(rng.integers(1, s[3] + 2))]}


op(
    "adaptive_avg_pool2d",
    1,
    _draw_adaptive,
    lambda sh, a: sh[0][:2] + tuple(a["size"]),
    lambda m, xs, a, t: _block(m, AdaptiveAvgPool2d(tuple(a["size"]), name=t), xs[0]),
    weight=0.5,
)


def _draw_groupnorm(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if len(s) < 3 or math.prod(s[2:]) < 2:
        return None
    return {"groups": int(rng.choice([g for g in (1, 2, 3) if s[1] % g == 0])), "affine": bool(rng.random() < 0.7)}


op(
    "groupnorm",
    1,
    _draw_groupnorm,
    _same,
    lambda m, xs, a, t: _block(m, GroupNorm(a["groups"], _shapes_of[t][0][1], affine=a["affine"], name=t), xs[0]),
    weight=0.4,
)
op(
    "rmsnorm",
    1,
    lambda r, sh: {} if sh[0] else None,
    _same,
    lambda m, xs, a, t: _block(m, RMSNorm(_shapes_of[t][0][-1], name=t), xs[0]),
    weight=0.4,
)


def _draw_batchnorm(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if len(s) not in (2, 3, 4):
        return None
    per_channel = math.prod(s) // s[1]
    if per_channel < 2:
        return None
    return {"affine": bool(rng.random() < 0.7), "track": bool(rng.random() < 0.8)}


def _batchnorm(m: Model, xs: list[Any], a: dict[str, Any], tag: str) -> Any:
    s = _shapes_of[tag][0]
    cls = BatchNorm2d if len(s) == 4 else BatchNorm1d
    return _block(m, cls(s[1], affine=a["affine"], track_running_stats=a["track"], name=tag), xs[0])


op("batchnorm", 1, _draw_batchnorm, _same, _batchnorm, weight=0.4)


def _draw_attention(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if len(s) != 3:
        return None
    heads = [h for h in (1, 2, 3) if s[2] % h == 0]
    return {"heads": int(rng.choice(heads)), "causal": bool(rng.random() < 0.5)}


op(
    "attention",
    1,
    _draw_attention,
    _same,
    lambda m, xs, a, t: _block(
        m, MultiHeadAttention(_shapes_of[t][0][2], a["heads"], self_attention=True, causal=a["causal"], name=t), xs[0]
    ),
    weight=0.4,
)


def _draw_rnn(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if len(s) != 3 or s[1] > 4:
        return None
    return {
        "kind": str(rng.choice(["lstm", "gru"])),
        "hidden": int(rng.integers(1, 4)),
        "bidirectional": bool(rng.random() < 0.3),
        "layers": int(rng.choice([1, 1, 2])),
    }


def _rnn(m: Model, xs: list[Any], a: dict[str, Any], tag: str) -> Any:
    cls = LSTM if a["kind"] == "lstm" else GRU
    block = cls(
        _shapes_of[tag][0][2],
        a["hidden"],
        num_layers=a["layers"],
        batch_first=True,
        bidirectional=a["bidirectional"],
        name=tag,
    )
    return _block(m, block, xs[0])


op("rnn", 1, _draw_rnn, lambda sh, a: sh[0][:2] + (a["hidden"] * (2 if a["bidirectional"] else 1),), _rnn, weight=0.3)


def _draw_broadcast_to(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    (s,) = shapes
    if len(s) > 3:
        return None
    lead = [int(rng.integers(1, 4)) for _ in range(int(rng.integers(0, 2)))]
    return {"shape": lead + [int(rng.integers(2, 4)) if d == 1 else d for d in s]}


op(
    "broadcast_to",
    1,
    _draw_broadcast_to,
    lambda sh, a: tuple(a["shape"]),
    lambda m, xs, a, t: m.call("broadcast_to", xs[0], shape=tuple(a["shape"])),
    weight=0.4,
)


def _draw_reshape_as(rng: np.random.Generator, shapes: list[Shape]) -> dict[str, Any] | None:
    a, b = shapes
    return {} if math.prod(a) == math.prod(b) and a != b else None


op(
    "reshape_as",
    2,
    _draw_reshape_as,
    lambda sh, a: sh[1],
    lambda m, xs, a, t: m.call("reshape_as", xs[0], xs[1]),
    weight=0.5,
)
op("sign_mul", 1, _always, _same, lambda m, xs, a, t: m.call("mul", m.call("sign", xs[0]), xs[0]), weight=0.3)


# ================================================================ generate and build
_shapes_of: dict[str, list[Shape]] = {}  # op tag -> operand shapes, for builders that need them


def _random_shape(rng: np.random.Generator) -> Shape:
    if rng.random() < 0.2:  # an image batch, for convolutions and pooling
        return (
            int(rng.integers(1, 3)),
            int(rng.choice([1, 2, 3, 4])),
            int(rng.integers(3, 7)),
            int(rng.integers(3, 7)),
        )
    rank = int(rng.choice([1, 2, 2, 3, 3, 4]))
    return tuple(int(rng.integers(1, 6)) for _ in range(rank))


def generate(seed: int, max_ops: int = 8) -> Spec:
    """A random spec; the same for the same seed."""
    rng = np.random.default_rng(seed)
    inputs = [_random_shape(rng) for _ in range(int(rng.integers(1, 3)))]
    shapes: list[Shape] = list(inputs)
    ops: list[list[Any]] = []
    names = list(OPS)
    weights = np.array([OPS[n].weight for n in names])
    for _ in range(int(rng.integers(1, max_ops + 1))):
        for _attempt in range(30):
            o = OPS[names[int(rng.choice(len(names), p=weights / weights.sum()))]]
            # operands: mostly recent values, so that graphs are deep rather than wide
            pick = [int(min(len(shapes) - 1, abs(rng.normal(len(shapes) - 1, 2)))) for _ in range(o.arity)]
            if o.arity == 2 and rng.random() < 0.3:
                pick[1] = pick[0]
            operand = [shapes[i] for i in pick]
            attrs = o.draw(rng, operand)
            if attrs is None:
                continue
            out = o.shape(operand, attrs)
            if any(d == 0 for d in out) or math.prod(out) > 4096:
                continue
            ops.append([o.name, pick, attrs])
            shapes.append(out)
            break
    n_in = len(inputs)
    candidates = list(range(n_in, len(shapes))) or [0]
    outputs = [candidates[-1]]
    if len(candidates) > 2 and rng.random() < 0.4:
        outputs.append(int(rng.choice(candidates[:-1])))
    return _prune({"seed": seed, "inputs": [list(s) for s in inputs], "ops": ops, "outputs": outputs})


def shapes_of(spec: Spec) -> list[Shape]:
    shapes = [tuple(s) for s in spec["inputs"]]
    for name, args, attrs in spec["ops"]:
        shapes.append(OPS[name].shape([shapes[i] for i in args], attrs))
    return shapes


def build(spec: Spec, prefix: str = "", model: Model | None = None) -> Model:
    """The logical model of ``spec``: inputs ``x{i}`` (scaled by params ``s{i}``), outputs ``y{k}``, every
    name after ``prefix``; added to ``model`` when given (a forest of graphs, see :func:`check_batch`)."""
    m = Model() if model is None else model
    shapes = shapes_of(spec)
    refs: list[Any] = []
    for i, shape in enumerate(spec["inputs"]):
        refs.append(
            m.call(
                "mul",
                IOKey(f"{prefix}x{i}", shape=list(shape)),
                IOKey(f"{prefix}s{i}", shape=list(shape), role="param"),
            )
        )
    for j, (name, args, attrs) in enumerate(spec["ops"]):
        tag = f"{prefix}op{j}"
        _shapes_of[tag] = [shapes[i] for i in args]
        if name == "layernorm":
            _last_dim[tag] = shapes[args[0]][-1]
        refs.append(OPS[name].build(m, [refs[i] for i in args], attrs, tag))
        _shapes_of.pop(tag)
        _last_dim.pop(tag, None)
    for k, o in enumerate(spec["outputs"]):
        m.call("identity", refs[o], output=IOKey(f"{prefix}y{k}"))
    return m


def input_shapes(spec: Spec, prefix: str = "") -> dict[str, list[int]]:
    return {f"{prefix}x{i}": list(s) for i, s in enumerate(spec["inputs"])}


# ======================================================================= check
@dataclass
class Result:
    """What one graph gave: ``failures`` (backend -> what went wrong) and GGML's outcome."""

    spec: Spec
    failures: dict[str, str] = field(default_factory=dict)
    ggml: str = "not run"  # "agrees", "unsupported: ...", "failed"
    #: differences explained away (backend -> why): see :data:`KINKS`
    notes: dict[str, str] = field(default_factory=dict)


@dataclass
class Fixture:
    """The oracle's params, inputs, output gradients, outputs and gradients (of one graph or a forest)."""

    params: dict[str, np.ndarray]
    inputs: dict[str, np.ndarray]
    cotangents: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    gradients: dict[str, np.ndarray]
    #: the outputs in inference mode (BatchNorm's running statistics), what GGML computes
    inference: dict[str, np.ndarray] = field(default_factory=dict)

    def part(self, prefix: str) -> Fixture:
        """The entries of one graph of a forest."""

        def pick(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {k: v for k, v in d.items() if k.startswith(prefix)}

        return Fixture(
            pick(self.params),
            pick(self.inputs),
            pick(self.cotangents),
            pick(self.outputs),
            pick(self.gradients),
            pick(self.inference),
        )

    def renamed(self, old: str, new: str) -> Fixture:
        def rename(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {new + k[len(old) :]: v for k, v in d.items()}

        return Fixture(
            *(
                rename(d)
                for d in (self.params, self.inputs, self.cotangents, self.outputs, self.gradients, self.inference)
            )
        )


_BACKENDS: dict[tuple[str, str, str], Any] = {}


def backend(name: str, dtype: str = "float64", autodiff: str = "mithril") -> Any:
    key = (name, dtype, autodiff)
    if key not in _BACKENDS:
        cls = {"numpy": "NumpyBackend", "torch": "TorchBackend", "jax": "JaxBackend", "ggml": "GGMLBackend"}[name]
        kw: dict[str, Any] = {"dtype": getattr(ml, dtype)}
        if name in ("torch", "jax"):
            kw["autodiff"] = autodiff
        if name == "ggml":
            kw["n_threads"] = 1
        _BACKENDS[key] = getattr(ml, cls)(**kw)
    return _BACKENDS[key]


#: JAX runs each graph (or forest) as one jax.jit: eager JAX compiles every op for every new shape
JIT = {"jax": True}

#: ops with a kink (a point where the derivative jumps). XLA contracts ``a * b - c`` into one FMA under
#: jax.jit (plain jax.jit does too), so a value that is exactly 0 in NumPy (``x*x - min(x*x)`` at the
#: argmin) comes out as 1e-20 there, and the fusions of the backward pass that recompute it need not
#: round it alike: a kink after it (``abs``) takes either one-sided derivative. A jitted backend's
#: difference in a graph with a kink is therefore re-checked without jit: when that agrees with NumPy
#: it is a note, not a failure (tests/reliability/test_fuzzer_regressions.py, the kink test).
KINKS = frozenset(
    {
        "relu",
        "abs",
        "leaky_relu",
        "maximum",
        "minimum",
        "max",
        "min",
        "where_greater",
        "max_pool2d",
        "max_pool1d",
        "sign_mul",
        "gelu",
    }
)


def oracle(model: Model, shapes: dict[str, list[int]], seed: int) -> Fixture:
    be = backend("numpy")
    pm = ml.compile(model, be, shapes=shapes)
    rng = np.random.default_rng(seed + 1)
    params = pm.randomize_params(seed=seed)
    inputs = {k: rng.standard_normal(s) for k, s in shapes.items()}
    outputs = pm.evaluate(params, inputs)
    cot = {k: rng.standard_normal(np.shape(v)) for k, v in outputs.items()}
    _, grads = pm.evaluate(params, inputs, cot)
    inference = pm.evaluate(params, inputs, training=False)
    return Fixture(
        {k: np.asarray(v) for k, v in params.items()},
        inputs,
        cot,
        {k: np.asarray(v) for k, v in outputs.items()},
        {k: np.asarray(v) for k, v in grads.items()},
        {k: np.asarray(v) for k, v in inference.items()},
    )


def _compare(got: dict[str, Any], want: dict[str, np.ndarray], rtol: float, what: str, to_numpy: Any) -> dict[str, str]:
    """key -> what differs, for every key of ``want`` that ``got`` does not match."""
    bad: dict[str, str] = {}
    for k, w in want.items():
        if k not in got:
            bad[k] = f"{what}[{k!r}] missing (got {sorted(got)[:6]})"
            continue
        g = np.asarray(to_numpy(got[k]), dtype=np.float64)
        if g.shape != w.shape:
            bad[k] = f"{what}[{k!r}]: shape {list(g.shape)} != {list(w.shape)}"
            continue
        scale = max(1.0, float(np.max(np.abs(w)))) if w.size else 1.0
        close = np.isclose(g, w, rtol=rtol, atol=rtol * scale, equal_nan=True)
        if not close.all():
            i = tuple(int(j) for j in np.argwhere(~close)[0])
            bad[k] = f"{what}[{k!r}]{list(i)}: {g[i]!r} != {w[i]!r} (max diff {float(np.nanmax(np.abs(g - w))):.3g})"
    return bad


def run_float64(model: Model, fx: Fixture, name: str, autodiff: str = "mithril", **options: Any) -> dict[str, str]:
    """Key -> what differs from the oracle on ``name`` in float64 (``"*"`` when it raised). ``options`` go
    to compile (``gradient_checkpointing``; ``static_inference`` checks the inference outputs only)."""
    be = backend(name, "float64", autodiff)
    options = dict(options)
    lazy = options.pop("lazy", False)  # shapes known only when evaluate sees the inputs
    try:
        with be.scope():
            pm = ml.compile(
                model,
                be,
                shapes=None if lazy else {k: list(v.shape) for k, v in fx.inputs.items()},
                jit=JIT.get(name, False),
                **options,
            )
            params = {k: be.array(v) for k, v in fx.params.items()}
            inputs = {k: be.array(v) for k, v in fx.inputs.items()}
            if options.get("static_inference"):
                return _compare(pm.evaluate(params, inputs), fx.inference, RTOL64, "output", be.to_numpy)
            bad = {}
            if name not in JIT:  # a jitted backend compiles each call: outputs come with the gradients
                bad = _compare(pm.evaluate(params, inputs), fx.outputs, RTOL64, "output", be.to_numpy)
            out, grads = pm.evaluate(params, inputs, {k: be.array(v) for k, v in fx.cotangents.items()})
            bad.update(_compare(out, fx.outputs, RTOL64, "output", be.to_numpy))
            bad.update(_compare(grads, fx.gradients, RTOL64, "gradient", be.to_numpy))
            return bad
    except Exception as e:
        return {"*": f"raised {type(e).__name__}: {e}\n{traceback.format_exc(limit=-4)}"}


#: each line of GGML's UnsupportedError names the primitive and its block (or the input/param/state)
_NAMES_ITS_PLACE = re.compile(r"^(primitive '[^']+' in block '[^'?][^']*'|(input|param|state) '[^']+'): \S")


def run_ggml(model: Model, fx: Fixture) -> tuple[str, str | None]:
    """(outcome, failure): outcome "agrees", "unsupported: ..." or "failed" (then failure says why)."""
    be = backend("ggml", "float32")
    try:
        pm = ml.compile(model, be, shapes={k: list(v.shape) for k, v in fx.inputs.items()})
    except UnsupportedError as e:
        problems = [line.strip() for line in str(e).splitlines()[1:]] or [str(e)]
        unnamed = [p for p in problems if not _NAMES_ITS_PLACE.match(p)]
        if unnamed:
            return "failed", f"UnsupportedError names no primitive and block: {unnamed[0]}"
        return f"unsupported: {problems[0]}", None
    except Exception as e:
        return "failed", f"compile raised {type(e).__name__}: {e}"
    try:
        params = {k: v.astype(np.float32) for k, v in fx.params.items()}
        out = pm.evaluate(params, {k: v.astype(np.float32) for k, v in fx.inputs.items()}, training=False)
    except Exception as e:
        return "failed", f"evaluate raised {type(e).__name__}: {e}"
    bad = _compare(out, fx.inference, RTOL32, "output", np.asarray)
    return ("agrees", None) if not bad else ("failed", next(iter(bad.values())))


#: (label, backend, autodiff, compile options) of every way a forest runs; ``every`` forests (``i % every == 0``)
VARIANTS: list[tuple[str, str, str, dict[str, Any], int]] = [
    ("torch", "torch", "mithril", {}, 1),
    ("jax", "jax", "mithril", {}, 1),
    ("torch-autodiff", "torch", "torch", {}, 4),  # torch.autograd
    ("jax-autodiff", "jax", "jax", {}, 4),  # jax.vjp
    ("numpy-checkpointing", "numpy", "mithril", {"gradient_checkpointing": True}, 2),
    ("numpy-static", "numpy", "mithril", {"static_inference": True}, 3),
    ("torch-checkpointing", "torch", "mithril", {"gradient_checkpointing": True}, 5),
    ("numpy-lazy", "numpy", "mithril", {"lazy": True}, 2),  # shapes only from evaluate's inputs
]


def check(spec: Spec, backends: Sequence[str], *, every_variant: bool = True) -> Result:
    """Run one ``spec`` on ``backends`` against the NumPy float64 oracle (a forest of one)."""
    return check_batch([spec], backends, index=0 if every_variant else 1)[0]


def check_batch(specs: Sequence[Spec], backends: Sequence[str], *, index: int = 0) -> list[Result]:
    """Run ``specs`` as one *forest* (one model of independent graphs, names prefixed ``g{k}_``) on the
    float64 backends, so that each backend compiles once per batch (a jax.jit is most of the cost), and
    each graph alone on GGML (one unsupported primitive would make the whole forest unsupported).
    A backend that raises on the forest runs each graph alone, to say which one fails."""
    results = [Result(s) for s in specs]
    prefixes = [f"g{k}_" for k in range(len(specs))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            forest = Model()
            for spec, prefix in zip(specs, prefixes):
                build(spec, prefix, forest)
            shapes = {k: v for spec, prefix in zip(specs, prefixes) for k, v in input_shapes(spec, prefix).items()}
            fx = oracle(forest, shapes, specs[0].get("seed", 0))
        except Exception as e:
            if len(specs) == 1:
                results[0].failures["numpy"] = f"raised {type(e).__name__}: {e}\n{traceback.format_exc(limit=-4)}"
                return results
            return [check_batch([s], backends, index=index)[0] for s in specs]
        for label, name, autodiff, options, every in VARIANTS:
            if index % every or (name != "numpy" and name not in backends):
                continue
            bad = run_float64(forest, fx, name, autodiff, **options)
            if "*" in bad and len(specs) > 1:  # which graph?
                for r, spec, prefix in zip(results, specs, prefixes):
                    one = run_float64(
                        build(spec, "g0_"), fx.part(prefix).renamed(prefix, "g0_"), name, autodiff, **options
                    )
                    if one:
                        r.failures[label] = next(iter(one.values()))
                continue
            for key, what in bad.items():
                k = 0 if key == "*" else int(key[1 : key.index("_")])
                r, spec, prefix = results[k], specs[k], prefixes[k]
                if label in r.failures or label in r.notes:
                    continue
                if JIT.get(name) and key != "*" and any(op in KINKS for op, _, _ in spec["ops"]):
                    eager = _eager(
                        lambda: run_float64(
                            build(spec, "g0_"), fx.part(prefix).renamed(prefix, "g0_"), name, autodiff, **options
                        ),
                        name,
                    )
                    if not eager:
                        r.notes[label] = f"jit differs at a kink, eager agrees: {what}"
                        continue
                r.failures[label] = what
        if "ggml" in backends:
            for r, spec, prefix in zip(results, specs, prefixes):
                r.ggml, bad_g = run_ggml(build(spec, prefix), fx.part(prefix))
                if bad_g:
                    r.failures["ggml"] = bad_g
    return results


def _eager(fn: Callable[[], dict[str, str]], name: str) -> dict[str, str]:
    jit = JIT.pop(name)
    try:
        return fn()
    finally:
        JIT[name] = jit


# ===================================================================== minimise
def _prune(spec: Spec) -> Spec:
    """Only the ops the outputs depend on, renumbered."""
    n_in = len(spec["inputs"])
    need = set(spec["outputs"])
    for j in range(len(spec["ops"]) - 1, -1, -1):
        if n_in + j in need:
            need.update(spec["ops"][j][1])
    keep_in = [i for i in range(n_in) if i in need] or [0]
    new_index = {old: new for new, old in enumerate(keep_in)}
    ops = []
    for j, (name, args, attrs) in enumerate(spec["ops"]):
        if n_in + j in need:
            new_index[n_in + j] = len(keep_in) + len(ops)
            ops.append([name, [new_index[a] for a in args], attrs])
    return {
        **spec,
        "inputs": [spec["inputs"][i] for i in keep_in],
        "ops": ops,
        "outputs": [new_index[o] for o in spec["outputs"]],
    }


def minimise(spec: Spec, fails: Callable[[Spec], bool], rounds: int = 3) -> Spec:
    """A smaller spec that still ``fails``: fewer outputs, ops bypassed (an op's operand in its place)."""
    best = _prune(spec)
    for _ in range(rounds):
        changed = False
        if len(best["outputs"]) > 1:
            for o in list(best["outputs"]):
                trial = _prune({**best, "outputs": [o]})
                if _ok(trial) and fails(trial):
                    best, changed = trial, True
                    break
        n_in = len(best["inputs"])
        for j in range(len(best["ops"]) - 1, -1, -1):  # try to make an earlier value the output
            trial = _prune(
                {**best, "outputs": [n_in + j if o == n_in + len(best["ops"]) - 1 else o for o in best["outputs"]]}
            )
            if trial != best and _ok(trial) and fails(trial):
                best, changed = trial, True
                break
        if not changed:
            break
    return best


def _ok(spec: Spec) -> bool:
    try:
        shapes_of(spec)
        return True
    except Exception:
        return False


# ===================================================================== batches
@dataclass
class Batch:
    results: list[Result]
    seconds: float

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.failures]

    def ggml_coverage(self) -> float:
        ran = [r for r in self.results if r.ggml != "not run"]
        return sum(r.ggml == "agrees" for r in ran) / len(ran) if ran else 0.0

    def unsupported(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            if r.ggml.startswith("unsupported"):
                key = r.ggml.split(": ", 1)[1]
                if key.startswith("primitive") and " in block " in key:  # primitive 'p' in block 'b': why
                    prim, rest = key.split(" in block ", 1)
                    key = f"{prim}: {rest.split(': ', 1)[-1][:70]}"
                out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def report(self) -> list[str]:
        n = len(self.results)
        notes = sum(bool(r.notes) for r in self.results)
        lines = [
            f"graph fuzzer: {n} graphs in {self.seconds:.1f} s, {len(self.failures)} with failures"
            + (f", {notes} differing only under jit at a kink (fuzz.KINKS)" if notes else "")
        ]
        if any(r.ggml != "not run" for r in self.results):
            lines.append(
                f"GGML coverage: {self.ggml_coverage():.1%} of the inference graphs run on GGML and agree "
                f"with NumPy (float32 tolerance {RTOL32:g})"
            )
            for why, count in list(self.unsupported().items())[:12]:
                lines.append(f"  unsupported ({count}): {why}")
        for r in self.failures[:20]:
            for where, what in r.failures.items():
                lines.append(f"  seed {r.spec['seed']} {where}: {what.splitlines()[0][:300]}")
        return lines


def installed() -> list[str]:
    return [b for b in ("numpy", "torch", "jax", "ggml") if b in ml.plugins.backends()]


def run_batch(
    n: int,
    seed: int = 0,
    backends: Sequence[str] | None = None,
    *,
    max_ops: int = 8,
    forest: int = 20,
    progress: bool = False,
) -> Batch:
    """``n`` graphs from seeds ``seed..seed+n-1``, ``forest`` at a time; every 4th forest also runs with
    the backends' native autodiff (``autodiff="torch"``/``"jax"``)."""
    backends = [b for b in (backends or installed()) if b != "numpy"]
    t0 = time.perf_counter()
    results: list[Result] = []
    for i, start in enumerate(range(seed, seed + n, forest)):
        specs = [generate(s, max_ops) for s in range(start, min(start + forest, seed + n))]
        results.extend(check_batch(specs, backends, index=i))
        if progress and len(results) % 100 < forest:
            print(
                f"  {len(results)} graphs, {sum(bool(r.failures) for r in results)} with failures, "
                f"{time.perf_counter() - t0:.0f} s",
                flush=True,
            )
    return Batch(results, time.perf_counter() - t0)


#: the results recorded by tests/reliability/test_fuzz.py in this process, and their seconds
RECORDED: list[Result] = []
SECONDS: list[float] = []


def SUMMARY() -> list[str]:
    return Batch(RECORDED, sum(SECONDS)).report() if RECORDED else []


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--graphs", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-ops", type=int, default=8)
    p.add_argument("--backends", default=",".join(installed()))
    p.add_argument("--minimise", action="store_true", help="print a minimised spec of each failure")
    args = p.parse_args(argv)
    batch = run_batch(args.graphs, args.seed, args.backends.split(","), max_ops=args.max_ops, progress=True)
    for line in batch.report():
        print(line)
    for r in batch.failures:
        spec = r.spec
        if args.minimise:
            backends = [b for b in r.failures if b in ("torch", "jax", "ggml")] or ["torch"]
            spec = minimise(spec, lambda s: bool(check(s, backends).failures))
        print("failing spec:", json.dumps(spec))
    return 1 if batch.failures else 0


if __name__ == "__main__":
    sys.exit(main())
