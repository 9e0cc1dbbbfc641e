"""Each lowered primitive against NumPy in float32 (rtol 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest
from graphs import conv2d_ref, gelu_ref, one_node, pool2d_ref, softmax_ref

from mithril_ggml import GGMLBackend

BACKEND = GGMLBackend(n_threads=2)


def run(graph, *arrays: np.ndarray) -> np.ndarray:
    exe = BACKEND.lower(graph, jit=False)
    names = list(graph.inputs)
    out, _, _ = exe.run({}, dict(zip(names, arrays)), {})
    return out["out"]


def data(rng, shape, low=-2.0, high=2.0):
    return rng.uniform(low, high, shape).astype(np.float32)


def nonzero(rng, shape):
    return (rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)).astype(np.float32)


def check(got, want, rtol=1e-5, atol=1e-6):
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


# --------------------------------------------------------------- arithmetic
BROADCASTS = [
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),
    ((4,), (3, 4)),
    ((3, 1), (1, 4)),
    ((2, 3, 4), (3, 1)),
    ((2, 1, 4, 5), (3, 1, 1)),
    ((3, 4), 2.5),
    (2.5, (3, 4)),
    ((), (2, 3)),
    ((2, 3), ()),
]
ARITH = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
@pytest.mark.parametrize("prim", list(ARITH))
def test_arithmetic_broadcasting(prim, shapes, rng):
    arrays = [nonzero(rng, s) for s in shapes if not isinstance(s, float)]
    operands, it = [], iter(arrays)
    for s in shapes:
        operands.append(np.float32(s) if isinstance(s, float) else next(it))
    check(run(one_node(prim, shapes), *arrays), ARITH[prim](*operands))


@pytest.mark.parametrize("p", [2.0, 3.0, 0.5, -1.0, -0.5, -2.0, 0.0, 1.0])
def test_pow_constant_exponent(p, rng):
    x = data(rng, (3, 5), 0.5, 2.0)
    check(run(one_node("pow", [(3, 5), p]), x), x.astype(np.float64) ** p)


def test_pow_constant_base(rng):
    y = data(rng, (4,))
    check(run(one_node("pow", [2.0, (4,)]), y), 2.0 ** y.astype(np.float64))


@pytest.mark.parametrize(
    "shapes", [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((3, 4), 0.0), (0.0, (3, 4))], ids=str
)
@pytest.mark.parametrize("prim", ["maximum", "minimum"])
def test_maximum_minimum(prim, shapes, rng):
    arrays = [data(rng, s) for s in shapes if not isinstance(s, float)]
    it = iter(arrays)
    operands = [np.float32(s) if isinstance(s, float) else next(it) for s in shapes]
    check(run(one_node(prim, shapes), *arrays), getattr(np, prim)(*operands))


UNARY = {
    "neg": (np.negative, -3, 3),
    "abs": (np.abs, -3, 3),
    "sign": (np.sign, -3, 3),
    "exp": (np.exp, -5, 5),
    "log": (np.log, 0.1, 10),
    "sqrt": (np.sqrt, 0.0, 10),
    "sin": (np.sin, -3, 3),
    "cos": (np.cos, -3, 3),
    "tanh": (np.tanh, -4, 4),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), -8, 8),
    "relu": (lambda x: np.maximum(x, 0), -3, 3),
}


@pytest.mark.parametrize("prim", list(UNARY))
def test_unary(prim, rng):
    fn, lo, hi = UNARY[prim]
    x = data(rng, (4, 6), lo, hi)
    check(run(one_node(prim, [(4, 6)]), x), fn(x.astype(np.float64)))


def test_leaky_relu(rng):
    x = data(rng, (4, 6))
    check(run(one_node("leaky_relu", [(4, 6)], slope=0.1), x), np.where(x > 0, x, np.float32(0.1) * x))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate, rng):
    x = data(rng, (5, 7), -5, 5)
    check(run(one_node("gelu", [(5, 7)], approximate=approximate), x), gelu_ref(x, approximate))


def test_cast_float_is_identity(rng):
    x = data(rng, (3,))
    check(run(one_node("cast", [(3,)], kind="float"), x), x)


# ---------------------------------------------------------------- structure
@pytest.mark.parametrize(
    "a,b",
    [
        ((3, 5), (5, 4)),
        ((2, 3, 5), (5, 4)),
        ((3, 5), (2, 5, 4)),
        ((2, 3, 5), (2, 5, 4)),
        ((2, 1, 3, 5), (4, 5, 6)),
        ((1, 7), (7, 1)),
        ((2, 3, 4, 5), (1, 3, 5, 2)),
    ],
    ids=str,
)
def test_matmul(a, b, rng):
    x, y = data(rng, a), data(rng, b)
    check(run(one_node("matmul", [a, b]), x, y), np.matmul(x.astype(np.float64), y), atol=1e-5)


@pytest.mark.parametrize(
    "shape,axes",
    [((3, 4), None), ((2, 3, 4), (2, 0, 1)), ((2, 3, 4, 5), (3, 1, 0, 2)), ((2, 3, 4), (0, 2, 1))],
    ids=str,
)
def test_transpose(shape, axes, rng):
    x = data(rng, shape)
    check(run(one_node("transpose", [shape], axes=axes), x), np.transpose(x, axes))


def test_reshape_and_flatten(rng):
    x = data(rng, (2, 3, 4))
    check(run(one_node("reshape", [(2, 3, 4)], shape=(4, -1)), x), x.reshape(4, 6))
    check(run(one_node("flatten", [(2, 3, 4)]), x), x.reshape(2, 12))
    check(run(one_node("flatten", [(2, 3, 4)], start_axis=0, end_axis=1), x), x.reshape(6, 4))


def test_broadcast_to(rng):
    x = data(rng, (3, 1))
    check(run(one_node("broadcast_to", [(3, 1)], shape=(2, 3, 4)), x), np.broadcast_to(x, (2, 3, 4)))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis, rng):
    shapes = [(2, 3, 4)] * 3
    shapes = [tuple(d + i if k == axis % 3 else d for k, d in enumerate(s)) for i, s in enumerate(shapes)]
    xs = [data(rng, s) for s in shapes]
    check(run(one_node("concat", shapes, axis=axis), *xs), np.concatenate(xs, axis))


SLICES = [
    ((6, 5), (1, None), (4, None), (1, None)),
    ((6, 5), (None, 1), (None, 5), (2, 2)),
    ((7,), (1,), (7,), (3,)),
    ((4, 6, 5), (1, 0, 2), (3, 6, None), (1, 2, 2)),
    ((2, 3, 4, 5), (0, 1), (2, 3), (1, 1)),
]


@pytest.mark.parametrize("shape,starts,stops,steps", SLICES, ids=str)
def test_slice(shape, starts, stops, steps, rng):
    x = data(rng, shape)
    g = one_node("slice", [shape], starts=starts, stops=stops, steps=steps)
    idx = tuple(slice(a, z, s) for a, z, s in zip(starts, stops, steps))
    check(run(g, x), x[idx])


# --------------------------------------------------------------- reductions
@pytest.mark.parametrize("axis", [None, (0,), (1,), (2,), (0, 2), (-1,)], ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("prim", ["sum", "mean", "max", "min"])
def test_reductions(prim, axis, keepdims, rng):
    x = data(rng, (3, 4, 5))
    want = getattr(np, prim)(x.astype(np.float64), axis=axis, keepdims=keepdims)
    check(run(one_node(prim, [(3, 4, 5)], axis=axis, keepdims=keepdims), x), want, atol=1e-5)


@pytest.mark.parametrize("axis", [-1, 0])
def test_argmax(axis, rng):
    x = data(rng, (4, 6))
    got = run(one_node("argmax", [(4, 6)], axis=(axis,)), x)
    np.testing.assert_array_equal(got, np.argmax(x, axis=axis))
    assert got.dtype == np.int64


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("prim", ["softmax", "log_softmax"])
def test_softmax(prim, axis, rng):
    x = data(rng, (3, 4, 5), -4, 4)
    want = softmax_ref(x, axis)
    if prim == "log_softmax":
        want = np.log(want)
    check(run(one_node(prim, [(3, 4, 5)], axis=axis), x), want)


# ----------------------------------------------------------------------- nn
@pytest.mark.parametrize(
    "stride,padding,dilation", [((1, 1), (0, 0), (1, 1)), ((2, 2), (1, 1), (1, 1)), ((1, 2), (2, 0), (2, 1))], ids=str
)
def test_conv2d(stride, padding, dilation, rng):
    x, w = data(rng, (2, 3, 9, 8)), data(rng, (4, 3, 3, 2))
    g = one_node("conv2d", [(2, 3, 9, 8), (4, 3, 3, 2)], stride=stride, padding=padding, dilation=dilation)
    check(run(g, x, w), conv2d_ref(x, w, stride, padding, dilation), atol=1e-5)


@pytest.mark.parametrize("groups,c,o", [(2, 4, 6), (4, 4, 4), (3, 3, 6)])
def test_grouped_conv2d(groups, c, o, rng):
    x, w = data(rng, (2, c, 7, 6)), data(rng, (o, c // groups, 3, 3))
    g = one_node("conv2d", [x.shape, w.shape], groups=groups, padding=(1, 1))
    want = np.concatenate(
        [
            conv2d_ref(
                x[:, i * (c // groups) : (i + 1) * (c // groups)],
                w[i * (o // groups) : (i + 1) * (o // groups)],
                padding=(1, 1),
            )
            for i in range(groups)
        ],
        axis=1,
    )
    check(run(g, x, w), want, atol=1e-5)


@pytest.mark.parametrize(
    "kernel,stride,padding", [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 2), (1, 2), (1, 0))], ids=str
)
@pytest.mark.parametrize("op", ["max", "avg"])
def test_pool2d(op, kernel, stride, padding, rng):
    x = data(rng, (2, 3, 9, 8))
    g = one_node(f"{op}_pool2d", [(2, 3, 9, 8)], kernel_size=kernel, stride=stride, padding=padding)
    check(run(g, x), pool2d_ref(x, op, kernel, stride, padding))
