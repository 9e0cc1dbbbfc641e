"""Each lowered primitive against NumPy in float32 (rtol 1e-5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from graphs import conv2d_ref, gelu_ref, inp, one_node, pool2d_ref, softmax_ref

from mithril.errors import UnsupportedError
from mithril.ir.graph import Graph, GraphBuilder
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


# ------------------------------------------------- compositions (ggml lacks the op)
SPECIAL = np.array([-np.inf, -3.0, -2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0, 3.0, np.inf, np.nan], np.float32)


def check_ieee(got, want, rtol=0.0):
    """NaN where NaN; infinities and zeros with their sign; the other values to ``rtol``."""
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    special = np.isinf(want) | (want == 0)
    np.testing.assert_array_equal(got[special], want[special])
    np.testing.assert_array_equal(np.signbit(got[special]), np.signbit(want[special]))
    rest = ~special & ~np.isnan(want)
    np.testing.assert_allclose(got[rest], want[rest], rtol=rtol, atol=0)


def test_erf_against_math_erf(rng):
    x = np.concatenate([data(rng, (200,), -7, 7), data(rng, (50,), -1e-3, 1e-3), SPECIAL]).astype(np.float32)
    got = run(one_node("erf", [x.shape]), x)
    want = np.array([math.erf(v) if np.isfinite(v) else np.sign(v) if np.isinf(v) else np.nan for v in x.tolist()])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    fin = ~np.isnan(want)
    # float32 accuracy, relative for the tiny values too
    np.testing.assert_allclose(got[fin], want[fin], rtol=4e-7, atol=2e-7)


def test_pow_with_a_tensor_exponent_follows_powf_at_every_edge():
    x, y = SPECIAL.reshape(-1, 1), np.array([*SPECIAL, -2.5, 2.5, 4.0], np.float32)
    with np.errstate(all="ignore"):
        want = np.power(x, y)
    check_ieee(run(one_node("pow", [x.shape, y.shape]), x, y), want, rtol=2e-6)


def test_pow_with_a_tensor_exponent_is_accurate(rng):
    x = data(rng, (40, 1), -3, 3)
    y = np.concatenate([np.round(data(rng, (10,), -4, 4)), data(rng, (10,), -3, 3)]).astype(np.float32)
    with np.errstate(all="ignore"):
        want = np.power(x.astype(np.float64), y)
    check_ieee(run(one_node("pow", [x.shape, y.shape]), x, y), want, rtol=1e-5)


@pytest.mark.parametrize("p", [4.0, 1.5, -3.0])
def test_pow_other_constant_exponents(p, rng):
    x = np.concatenate([data(rng, (12,)), SPECIAL])
    with np.errstate(all="ignore"):
        want = np.power(x, np.float32(p))
    check_ieee(run(one_node("pow", [x.shape, p]), x), want, rtol=1e-5)


@pytest.mark.parametrize("c", [-2.0, 0.0, 1.0])
def test_pow_constant_base_not_positive_or_one(c):
    with np.errstate(all="ignore"):
        want = np.power(np.float32(c), SPECIAL)
    check_ieee(run(one_node("pow", [c, SPECIAL.shape]), SPECIAL), want, rtol=1e-6)


def compare_graph(prim: str, a_shape, b_shape) -> Graph:
    """``cast(prim(a, b), float)``: a bool model output is refused, its float cast is not."""
    g = Graph()
    b = GraphBuilder(g, where=f"test.{prim}")
    mask = b.emit(prim, inp(g, "a0", a_shape), inp(g, "a1", b_shape))
    g.outputs["out"] = b.emit("cast", mask, kind="float")
    return g


@pytest.mark.parametrize("prim", ["greater", "greater_equal", "less", "less_equal", "equal", "not_equal"])
def test_comparisons_are_exact_for_nan_inf_and_ties(prim, rng):
    a = np.concatenate([SPECIAL, data(rng, (5,))]).reshape(-1, 1)
    b = np.concatenate([SPECIAL, a[-5:, 0]])  # every pair of specials, and ties
    got = run(compare_graph(prim, a.shape, b.shape), a, b)
    np.testing.assert_array_equal(got, getattr(np, prim)(a, b).astype(np.float32))


def test_comparison_with_a_scalar_constant(rng):
    x = np.concatenate([SPECIAL, data(rng, (6,))])
    g = Graph()
    b = GraphBuilder(g, where="m")
    g.outputs["out"] = b.emit("cast", b.emit("less_equal", inp(g, "a0", x.shape), b.const(0.5)), kind="float")
    np.testing.assert_array_equal(run(g, x), (x <= 0.5).astype(np.float32))


def test_where_is_exact_whatever_the_branch_not_taken_holds(rng):
    x = np.concatenate([SPECIAL, data(rng, (7,))]).reshape(4, 5)
    y = data(rng, (5,))
    g = Graph()
    b = GraphBuilder(g, where="m")
    xv, yv = inp(g, "a0", x.shape), inp(g, "a1", y.shape)
    g.outputs["out"] = b.emit("where", b.emit("greater", yv, b.const(0.0)), b.emit("log", xv), yv)
    with np.errstate(all="ignore"):
        want = np.where(y > 0, np.log(x), y)
    check_ieee(run(g, x, y), want)


def test_causal_mask_softmax(rng):
    scores = data(rng, (2, 5, 5))
    g = Graph()
    b = GraphBuilder(g, where="attn")
    s = inp(g, "a0", scores.shape)
    masked = b.emit("where", b.emit("tril_mask", s, diagonal=0), s, b.const(-np.inf))
    g.outputs["out"] = b.emit("softmax", masked, axis=-1)
    want = softmax_ref(np.where(np.tril(np.ones((5, 5), bool)), scores, -np.inf), -1)
    check(run(g, scores), want)


@pytest.mark.parametrize("diagonal", [-1, 2])
def test_tril_mask_diagonal(diagonal, rng):
    like = data(rng, (3, 4, 6))
    g = Graph()
    b = GraphBuilder(g, where="m")
    g.outputs["out"] = b.emit("cast", b.emit("tril_mask", inp(g, "a0", like.shape), diagonal=diagonal), kind="float")
    np.testing.assert_array_equal(run(g, like), np.tril(np.ones((4, 6), np.float32), diagonal))


def test_cast_float_to_bool_and_back():
    g = Graph()
    b = GraphBuilder(g, where="m")
    g.outputs["out"] = b.emit("cast", b.emit("cast", inp(g, "a0", SPECIAL.shape), kind="bool"), kind="float")
    np.testing.assert_array_equal(run(g, SPECIAL), SPECIAL.astype(bool).astype(np.float32))


def test_a_bool_model_output_is_refused_with_its_block():
    with pytest.raises(UnsupportedError, match=r"'greater' in block 'test.greater'.*bool result is a model output"):
        BACKEND.lower(one_node("greater", [(3,), (3,)]), jit=False)


NEGATIVE_SLICES = [
    ((6, 5), (None,), (None,), (-1,)),
    ((6, 5), (4, None), (0, None), (-2, -1)),
    ((7,), (5,), (None,), (-2,)),
    ((4, 6, 5), (None, 5, 3), (None, 0, None), (-1, -2, -3)),
    ((2, 3, 4, 5), (1, None, 3, 4), (None, None, 0, 0), (-1, 1, -1, -2)),
    ((2, 3, 4, 7), (None, None, None, 1), (None, None, None, 6), (None, None, None, 2)),  # rank 4, strided last
    ((1, 3, 1, 4), (None, 2), (None, None), (None, -1)),
]


@pytest.mark.parametrize("shape,starts,stops,steps", NEGATIVE_SLICES, ids=str)
def test_slice_negative_steps_and_rank4_strided_last_axis(shape, starts, stops, steps, rng):
    x = data(rng, shape)
    g = one_node("slice", [shape], starts=starts, stops=stops, steps=steps)
    idx = tuple(slice(a, z, s) for a, z, s in zip(starts, stops, steps))
    check_ieee(run(g, x), x[idx])


CONV_T = [  # stride, padding, output_padding, dilation, groups
    ((1, 1), (0, 0), (0, 0), (1, 1), 1),
    ((2, 2), (1, 1), (1, 1), (1, 1), 1),
    ((2, 3), (0, 2), (1, 2), (1, 1), 1),
    ((1, 1), (1, 0), (0, 1), (2, 2), 2),
    ((3, 2), (2, 1), (2, 0), (2, 1), 2),
]


@pytest.mark.parametrize("stride,padding,output_padding,dilation,groups", CONV_T, ids=str)
def test_conv_transpose2d_against_torch(stride, padding, output_padding, dilation, groups, rng):
    torch = pytest.importorskip("torch")
    x, w = data(rng, (3, 4, 5, 6)), data(rng, (4, 6 // groups, 3, 2))
    attrs = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups)
    want = torch.nn.functional.conv_transpose2d(
        torch.tensor(x, dtype=torch.float64), torch.tensor(w, dtype=torch.float64), **attrs
    ).numpy()
    check(run(one_node("conv_transpose2d", [x.shape, w.shape], **attrs), x, w), want, atol=1e-5)


# ------------------------------------------------- more than 4 axes between reshapes and reductions
@pytest.mark.parametrize(
    "shape,axes,keepdims",
    [
        ((2, 3, 2, 3, 2, 2), (3, 5), False),  # adaptive average pooling's windows
        ((2, 3, 4, 5, 2), (0, 2, 4), False),  # 3 reduced runs, 5 merged axes: one staged reduction
        ((2, 3, 4, 5, 2), (1,), True),  # a rank-5 result, reshaped back
        ((3, 2, 2, 2, 2, 2), None, False),
    ],
    ids=str,
)
@pytest.mark.parametrize("prim", ["sum", "mean", "max", "min"])
def test_reductions_of_more_than_four_axes(prim, shape, axes, keepdims, rng):
    x = data(rng, (math.prod(shape[:2]), math.prod(shape[2:])))
    g = Graph()
    b = GraphBuilder(g, where="m")
    wide = b.emit("reshape", inp(g, "a0", x.shape), shape=shape)
    r = b.emit(prim, wide, axis=axes, keepdims=keepdims)
    g.outputs["out"] = b.emit("reshape", r, shape=(-1,)) if len(r.shape) > 4 else r
    want = getattr(np, prim)(x.astype(np.float64).reshape(shape), axis=axes, keepdims=keepdims)
    check(run(g, x), want.reshape(g.outputs["out"].shape), atol=1e-5)


def test_group_norm_of_images_passes_a_rank_5_view(rng):
    import mithril as ml
    from mithril.models.zoo import GroupNorm

    x = data(rng, (2, 6, 5, 4))
    model = GroupNorm(3, 6)
    ref = ml.compile(model, ml.NumpyBackend(dtype=ml.float64), shapes={"input": list(x.shape)})
    params = ref.randomize_params(seed=0)
    want = ref.evaluate(params, {"input": x.astype(np.float64)})["output"]
    pm = ml.compile(model, BACKEND, shapes={"input": list(x.shape)})
    got = pm.evaluate({k: np.asarray(v, np.float32) for k, v in params.items()}, {"input": x})["output"]
    check(got, want, atol=1e-5)


def test_a_rank_5_value_used_element_wise_is_refused_with_its_block():
    g = Graph()
    b = GraphBuilder(g, where="net.split")
    wide = b.emit("reshape", inp(g, "a0", (4, 6)), shape=(2, 2, 3, 2, 1))
    b.where = "net.act"
    g.outputs["out"] = b.emit("reshape", b.emit("relu", wide), shape=(4, 6))
    with pytest.raises(UnsupportedError, match=r"'relu' in block 'net.act': rank 5 > 4") as e:
        BACKEND.lower(g, jit=False)
    assert "'net.split'" in str(e.value)  # the reshape making it is named too
