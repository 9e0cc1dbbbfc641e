"""Every kernel against an independent oracle: torch in float64, math.erf, plain NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mithril.primitives import CORE_PRIMITIVES, registry

torch = pytest.importorskip("torch")
F = torch.nn.functional

ATOL = 1e-12


def t(x):
    return torch.from_numpy(np.ascontiguousarray(x))


def close(actual, expected, atol=ATOL, rtol=1e-12):
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol)


def test_every_core_primitive_has_a_kernel(k64):
    assert set(CORE_PRIMITIVES) <= set(k64)


def test_kernels_accept_every_attribute_by_keyword(k64):
    """The contract: every attribute of the primitive is passed as a keyword."""
    import inspect

    for name in CORE_PRIMITIVES:
        kernel = k64[name]
        if isinstance(kernel, np.ufunc) or kernel is np.where or kernel is np.matmul:
            assert not registry.get(name).attrs, name
            continue
        params = inspect.signature(kernel).parameters
        for attr in registry.get(name).attrs:
            assert attr in params, (name, attr)


# ------------------------------------------------------------ element-wise
BINARY_SHAPES = [((3, 4), (3, 4)), ((2, 1, 5), (4, 1)), ((), (3,)), ((5,), ())]
BINARY = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
}


@pytest.mark.parametrize("shapes", BINARY_SHAPES)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary(k64, rng, name, shapes):
    a, b = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    close(k64[name](a, b), BINARY[name](t(a), t(b)))


@pytest.mark.parametrize("shapes", BINARY_SHAPES)
def test_pow(k64, rng, shapes):
    a, b = rng.uniform(0.1, 3, shapes[0]), rng.standard_normal(shapes[1])
    close(k64["pow"](a, b), torch.pow(t(a), t(b)))


@pytest.mark.parametrize("name", ["greater", "greater_equal", "less", "less_equal", "equal", "not_equal"])
def test_compare(k64, rng, name):
    a = rng.integers(0, 3, (4, 5)).astype(np.float64)
    b = rng.integers(0, 3, (5,)).astype(np.float64)
    out = k64[name](a, b)
    assert out.dtype == np.bool_
    np.testing.assert_array_equal(
        out,
        getattr(
            torch, name.replace("not_equal", "ne").replace("equal", "eq") if name in ("equal", "not_equal") else name
        )(t(a), t(b)).numpy(),
    )


def test_where(k64, rng):
    c = rng.random((3, 1, 4)) > 0.5
    a, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 5, 1))
    close(k64["where"](c, a, b), torch.where(t(c), t(a), t(b)))


def test_where_with_scalar_constant_keeps_float32(k32, rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    assert k32["where"](x > 0, x, np.zeros((), np.float32)).dtype == np.float32
    assert k32["where"](x > 0, x, 0.0).dtype == np.float32


@pytest.mark.parametrize("kind,dtype", [("float", np.float32), ("int", np.int64), ("bool", np.bool_)])
def test_cast(k32, kind, dtype):
    x = np.array([-1.7, 0.0, 0.5, 2.9])
    out = k32["cast"](x, kind=kind)
    assert out.dtype == dtype
    np.testing.assert_array_equal(
        out, t(x).to({np.float32: torch.float32, np.int64: torch.int64, np.bool_: torch.bool}[dtype]).numpy()
    )


def test_cast_float_uses_the_backend_dtype(k64):
    assert k64["cast"](np.array([1, 2]), kind="float").dtype == np.float64
    assert k64["cast"](np.array([True]), kind="int").dtype == np.int64


UNARY = {
    "neg": torch.neg,
    "abs": torch.abs,
    "sign": torch.sign,
    "exp": torch.exp,
    "sin": torch.sin,
    "cos": torch.cos,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "erf": torch.erf,
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(k64, rng, name):
    x = np.concatenate([rng.standard_normal(200) * 3, [0.0, -0.0, 1.0, -1.0, 30.0, -30.0]]).reshape(2, -1)
    close(k64[name](x), UNARY[name](t(x)), atol=1e-15, rtol=1e-14)


@pytest.mark.parametrize("name", ["log", "sqrt"])
def test_unary_positive(k64, rng, name):
    x = rng.uniform(1e-3, 10, (4, 7))
    close(k64[name](x), getattr(torch, name)(t(x)))


def test_sigmoid_is_stable(k64, k32):
    x = np.array([-1000.0, -745.0, -40.0, -1e-3, 0.0, 1e-3, 40.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out = k64["sigmoid"](x)
        out32 = k32["sigmoid"](x.astype(np.float32))
    close(out, torch.sigmoid(t(x)), atol=1e-300, rtol=1e-14)
    assert out32.dtype == np.float32 and np.all(np.isfinite(out32))


@pytest.mark.parametrize("slope", [0.01, 0.2, 1.5, -0.3])
def test_leaky_relu(k64, rng, slope):
    x = rng.standard_normal((5, 6))
    close(k64["leaky_relu"](x, slope=slope), F.leaky_relu(t(x), slope))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(k64, rng, approximate):
    x = np.concatenate([rng.standard_normal(300) * 4, np.linspace(-9, 9, 37)])
    close(k64["gelu"](x, approximate=approximate), F.gelu(t(x), approximate=approximate), atol=1e-15, rtol=1e-14)


def test_erf_matches_math_erf():
    from mithril_numpy.special import erf

    x = np.concatenate(
        [
            np.linspace(-7, 7, 200_001),
            np.geomspace(1e-300, 1.0, 2_000),
            -np.geomspace(1e-300, 1.0, 2_000),
            [0.0, -0.0, 0.5, 1.0 - 2**-53, 1.0, 1.0 + 2**-52, 5.9, 5.93, 6.0, 6.0 - 2**-50, 26.0, 1e300],
        ]
    )
    expected = np.array([math.erf(v) for v in x])
    actual = erf(x)
    assert np.max(np.abs(actual - expected)) <= 3e-16
    assert np.max(np.abs(actual - expected) / np.maximum(np.abs(expected), 1e-300)) <= 5e-16
    assert np.signbit(erf(np.array(-0.0)))
    out = erf(np.array([np.inf, -np.inf, np.nan]))
    assert out[0] == 1.0 and out[1] == -1.0 and np.isnan(out[2])


def test_erf_keeps_dtype_and_rank0():
    from mithril_numpy.special import erf

    for dtype, tol in ((np.float16, 1e-3), (np.float32, 2e-7)):
        x = np.linspace(-4, 4, 1001).astype(dtype)
        out = erf(x)
        assert out.dtype == dtype
        close(out.astype(np.float64), [math.erf(float(v)) for v in x], atol=tol, rtol=0)
    out = erf(np.array(0.3))
    assert out.shape == () and abs(float(out) - math.erf(0.3)) < 1e-16


# --------------------------------------------------------------- structure
@pytest.mark.parametrize(
    "sa,sb", [((3, 4), (4, 5)), ((2, 3, 4), (4, 6)), ((2, 1, 3, 4), (5, 4, 2)), ((1, 4, 2), (3, 2, 6))]
)
def test_matmul(k64, rng, sa, sb):
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    close(k64["matmul"](a, b), torch.matmul(t(a), t(b)))


@pytest.mark.parametrize("axes", [None, (1, 0, 2), (2, 0, 1), (-1, 0, 1)])
def test_transpose(k64, rng, axes):
    x = rng.standard_normal((2, 3, 4))
    expected = t(x).permute(*(axes if axes is not None else (2, 1, 0)))
    close(k64["transpose"](x, axes=axes), expected)


def test_reshape(k64, rng):
    x = rng.standard_normal((2, 3, 4))
    close(k64["reshape"](x, shape=(4, -1)), t(x).reshape(4, -1))
    close(k64["reshape"](x.transpose(2, 0, 1), shape=(24,)), t(x).permute(2, 0, 1).reshape(24))


@pytest.mark.parametrize("start,end", [(1, -1), (0, -1), (0, 1), (1, 2), (-2, -1), (2, 2), (3, 3)])
def test_flatten(k64, rng, start, end):
    x = rng.standard_normal((2, 3, 4, 5))
    close(k64["flatten"](x, start_axis=start, end_axis=end), torch.flatten(t(x), start, end))


def test_flatten_rank0(k64):
    close(
        k64["flatten"](np.array(2.0), start_axis=0, end_axis=-1), torch.flatten(torch.tensor(2.0, dtype=torch.float64))
    )


def test_broadcast_to(k64, rng):
    x = rng.standard_normal((3, 1))
    close(k64["broadcast_to"](x, shape=(2, 3, 4)), t(x).expand(2, 3, 4))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(k64, rng, axis):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for s, n in zip(shapes, (1, 2, 3)):
        s[axis] = n
    xs = [rng.standard_normal(s) for s in shapes]
    close(k64["concat"](*xs, axis=axis), torch.cat([t(x) for x in xs], dim=axis))
    close(k64["concat"](xs[0], axis=axis), t(xs[0]))


SLICES = [
    ((1,), (3,), (None,)),
    ((None, 1), (None, None), (None, 2)),
    ((-2, None), (None, 1), (-1, None)),
    ((None, 4, 0), (None, 0, None), (2, -1, 3)),
    ((5,), (7,), (1,)),  # empty
]


@pytest.mark.parametrize("starts,stops,steps", SLICES)
def test_slice_and_its_gradient(k64, rng, starts, stops, steps):
    x = rng.standard_normal((4, 5, 6))
    # oracle: explicit index lists per axis
    index = [np.arange(x.shape[i])[slice(a, b, c)] for i, (a, b, c) in enumerate(zip(starts, stops, steps))]
    expected = x[np.ix_(*index, *[np.arange(n) for n in x.shape[len(index) :]])]
    out = k64["slice"](x, starts=starts, stops=stops, steps=steps)
    close(out, expected)
    # slice_grad is the transpose of slice: <slice(x), g> == <x, slice_grad(g)>
    g = rng.standard_normal(out.shape)
    gx = k64["slice_grad"](g, input_shape=x.shape, starts=starts, stops=stops, steps=steps)
    assert gx.shape == x.shape
    np.testing.assert_allclose(np.sum(out * g), np.sum(x * gx), atol=1e-12)
    mask = np.zeros(x.shape, bool)
    mask[np.ix_(*index, *[np.arange(n) for n in x.shape[len(index) :]])] = True
    assert np.all(gx[~mask] == 0)


# -------------------------------------------------------------- reductions
AXES = [None, (0,), (-1,), (0, 2), (-1, 1), (0, 1, 2), ()]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
def test_reductions(k64, rng, name, axis, keepdims):
    x = rng.standard_normal((3, 4, 5))
    tx = t(x)
    dims = tuple(range(3)) if axis is None else axis
    if name in ("sum", "mean"):
        if axis == ():  # torch reads dim=() as "all axes"; the primitive means "none"
            expected = tx
        else:
            expected = getattr(torch, name)(tx, dim=dims, keepdim=keepdims)
    else:
        fn = torch.amax if name == "max" else torch.amin
        expected = tx if axis == () else fn(tx, dim=dims, keepdim=keepdims)
    close(k64[name](x, axis=axis, keepdims=keepdims), expected)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("keepdims", [False, True])
def test_argmax(k64, rng, axis, keepdims):
    x = rng.integers(0, 3, (4, 5, 6)).astype(np.float64)  # ties: the first index wins, as torch
    out = k64["argmax"](x, axis=(axis,), keepdims=keepdims)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, torch.argmax(t(x), dim=axis, keepdim=keepdims).numpy())


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax(k64, rng, name, axis):
    x = rng.standard_normal((3, 4, 5)) * 5
    x[0] += 1000.0  # stability
    close(k64[name](x, axis=axis), getattr(F, name)(t(x), dim=axis))


# ------------------------------------------------------------- convolution
CONV_CASES = [
    # (N, C, H, W, O, KH, KW, stride, padding, dilation, groups)
    (2, 3, 8, 8, 4, 3, 3, (1, 1), (0, 0), (1, 1), 1),
    (2, 3, 8, 8, 4, 3, 3, (1, 1), (1, 1), (1, 1), 1),
    (2, 4, 9, 10, 6, 3, 2, (2, 3), (1, 0), (2, 1), 2),  # non-divisible
    (1, 6, 7, 7, 6, 3, 3, (2, 2), (1, 1), (1, 1), 6),  # depthwise
    (3, 2, 10, 11, 4, 2, 3, (3, 2), (0, 1), (1, 2), 1),
    (2, 4, 12, 12, 8, 5, 5, (2, 2), (2, 2), (1, 1), 4),
    (2, 3, 6, 6, 5, 1, 1, (1, 1), (0, 0), (1, 1), 1),  # 1x1
    (2, 3, 6, 7, 5, 1, 1, (2, 3), (0, 0), (1, 1), 1),
    (1, 2, 9, 9, 2, 3, 3, (4, 4), (3, 3), (3, 3), 1),  # padding > 1, big stride
    (2, 2, 5, 5, 3, 5, 5, (1, 1), (0, 0), (1, 1), 1),  # kernel == input
    (2, 2, 5, 6, 3, 3, 2, (5, 4), (0, 0), (1, 1), 1),  # disjoint windows
]


def _random_conv_cases(count: int, seed: int = 7):
    r = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        g = int(r.choice([1, 2, 3]))
        c, o = g * int(r.integers(1, 4)), g * int(r.integers(1, 4))
        kh, kw = (int(v) for v in r.integers(1, 5, 2))
        s = tuple(int(v) for v in r.integers(1, 4, 2))
        d = tuple(int(v) for v in r.integers(1, 3, 2))
        p = tuple(int(v) for v in r.integers(0, 3, 2))
        h, w = (int(v) for v in r.integers(1, 13, 2))
        if (h + 2 * p[0] - d[0] * (kh - 1) - 1) < 0 or (w + 2 * p[1] - d[1] * (kw - 1) - 1) < 0:
            continue
        cases.append((int(r.integers(1, 4)), c, h, w, o, kh, kw, s, p, d, g))
    return cases


@pytest.mark.parametrize("layout", ["per_sample", "one_product"])
@pytest.mark.parametrize("case", CONV_CASES + _random_conv_cases(40))
def test_conv2d_and_gradients(k64, rng, monkeypatch, case, layout):
    from mithril_numpy import conv

    monkeypatch.setattr(conv, "PER_SAMPLE_MIN_PIXELS", 0 if layout == "per_sample" else 10**9)
    n, c, h, w, o, kh, kw, stride, padding, dilation, groups = case
    attrs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c // groups, kh, kw))
    out = k64["conv2d"](x, wt, **attrs)
    close(out, F.conv2d(t(x), t(wt), None, stride, padding, dilation, groups))
    g = rng.standard_normal(out.shape)
    close(
        k64["conv2d_input_grad"](g, wt, input_shape=x.shape, **attrs),
        torch.nn.grad.conv2d_input(x.shape, t(wt), t(g), stride, padding, dilation, groups),
    )
    close(
        k64["conv2d_weight_grad"](x, g, weight_shape=wt.shape, **attrs),
        torch.nn.grad.conv2d_weight(t(x), wt.shape, t(g), stride, padding, dilation, groups),
    )


def test_conv2d_accepts_non_contiguous_operands(k64, rng):
    x = rng.standard_normal((3, 2, 8, 7)).transpose(1, 0, 2, 3)  # (2, 3, 8, 7), not contiguous
    wt = rng.standard_normal((3, 4, 3, 3)).transpose(1, 0, 2, 3)[:, :, ::-1]
    close(
        k64["conv2d"](x, wt, stride=(1, 2), padding=(1, 1), dilation=(1, 1), groups=1),
        F.conv2d(t(x), t(wt.copy()), None, (1, 2), (1, 1)),
    )


# ----------------------------------------------------------------- pooling
POOL_CASES = [
    # (N, C, H, W, kernel, stride, padding, dilation)
    (2, 3, 8, 8, (2, 2), (2, 2), (0, 0), (1, 1)),
    (2, 3, 9, 7, (3, 3), (2, 2), (1, 1), (1, 1)),  # overlapping, non-divisible
    (1, 2, 10, 11, (3, 2), (1, 2), (1, 0), (2, 1)),
    (2, 2, 7, 7, (2, 3), (3, 1), (1, 1), (1, 2)),
    (1, 1, 5, 5, (5, 5), (1, 1), (2, 2), (1, 1)),
    (2, 2, 6, 9, (1, 1), (2, 3), (0, 0), (1, 1)),
]


def _torch_grad(fn, x, g):
    tx = t(x).requires_grad_(True)
    fn(tx).backward(t(g))
    return tx.grad


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool2d_and_gradient(k64, rng, case):
    n, c, h, w, k, s, p, d = case
    attrs = dict(kernel_size=k, stride=s, padding=p, dilation=d)
    for x in (rng.standard_normal((n, c, h, w)), rng.integers(-2, 2, (n, c, h, w)).astype(np.float64)):  # ties

        def fn(tx):
            return F.max_pool2d(tx, k, s, p, d, ceil_mode=False)

        out = k64["max_pool2d"](x, **attrs)
        close(out, fn(t(x)))
        g = rng.standard_normal(out.shape)
        close(k64["max_pool2d_grad"](x, g, **attrs), _torch_grad(fn, x, g))


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", POOL_CASES)
def test_avg_pool2d_and_gradient(k64, rng, case, count_include_pad):
    n, c, h, w, k, s, p, _ = case
    attrs = dict(kernel_size=k, stride=s, padding=p, count_include_pad=count_include_pad)
    x = rng.standard_normal((n, c, h, w))

    def fn(tx):
        return F.avg_pool2d(tx, k, s, p, ceil_mode=False, count_include_pad=count_include_pad)

    out = k64["avg_pool2d"](x, **attrs)
    close(out, fn(t(x)))
    g = rng.standard_normal(out.shape)
    close(k64["avg_pool2d_grad"](g, input_shape=x.shape, **attrs), _torch_grad(fn, x, g))


# ------------------------------------------------------------ float32 stays
def _float32_calls(rng):
    def f(*s):
        return rng.standard_normal(s).astype(np.float32)

    x, y = f(3, 4), f(4)
    img, wt = f(2, 4, 7, 7), f(6, 2, 3, 3)
    conv = dict(stride=(2, 1), padding=(1, 1), dilation=(1, 1), groups=2)
    mp = dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 1))
    ap = dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), count_include_pad=False)
    calls = {name: ((x, y), {}) for name in ("add", "sub", "mul", "div", "maximum", "minimum")}
    calls["pow"] = ((np.abs(x), y), {})
    calls.update(
        {name: ((x,), {}) for name in ("neg", "abs", "sign", "exp", "sin", "cos", "tanh", "sigmoid", "relu", "erf")}
    )
    calls.update(
        {
            "log": ((np.abs(x),), {}),
            "sqrt": ((np.abs(x),), {}),
            "leaky_relu": ((x,), {"slope": 0.1}),
            "gelu": ((x,), {"approximate": "none"}),
            "where": ((x > 0, x, y), {}),
            "cast": ((x,), {"kind": "float"}),
            "matmul": ((x, f(4, 5)), {}),
            "transpose": ((x,), {"axes": None}),
            "reshape": ((x,), {"shape": (-1,)}),
            "flatten": ((img,), {"start_axis": 1, "end_axis": -1}),
            "broadcast_to": ((y,), {"shape": (3, 4)}),
            "concat": ((x, x), {"axis": 0}),
            "slice": ((x,), {"starts": (1,), "stops": (None,), "steps": (None,)}),
            "slice_grad": ((x,), {"input_shape": (5, 4), "starts": (1,), "stops": (4,), "steps": (None,)}),
            "softmax": ((x,), {"axis": -1}),
            "log_softmax": ((x,), {"axis": 0}),
        }
    )
    calls.update({name: ((x,), {"axis": (0,), "keepdims": False}) for name in ("sum", "mean", "max", "min")})
    out = k_conv_shape = (2, 6, 4, 7)
    calls.update(
        {
            "conv2d": ((img, wt), conv),
            "conv2d_input_grad": ((f(*k_conv_shape), wt), {"input_shape": img.shape, **conv}),
            "conv2d_weight_grad": ((img, f(*out)), {"weight_shape": wt.shape, **conv}),
            "max_pool2d": ((img,), mp),
            "max_pool2d_grad": ((img, f(2, 4, 4, 4)), mp),
            "avg_pool2d": ((img,), ap),
            "avg_pool2d_grad": ((f(2, 4, 4, 4),), {"input_shape": img.shape, **ap}),
        }
    )
    idx = rng.integers(0, 3, (2, 2))
    calls.update(
        {
            "gather_rows": ((x, idx), {}),
            "scatter_add_rows": ((f(2, 2, 4), idx), {"num_rows": 5}),
            "gather_last": ((f(2, 2, 4), idx), {}),
            "scatter_last": ((f(2, 2), idx), {"size": 4}),
            "unflatten": ((x,), {"axis": 1, "sizes": (2, -1)}),
            "reshape_as": ((x, f(12)), {}),
            "conv_transpose2d": (
                (img, f(4, 3, 2, 2)),
                {"stride": (2, 1), "padding": (1, 0), "output_padding": (1, 0), "dilation": (1, 1), "groups": 2},
            ),
        }
    )
    return calls


def test_float32_stays_float32(k32, rng):
    calls = _float32_calls(rng)
    float_out = set(CORE_PRIMITIVES) - {
        "greater",
        "greater_equal",
        "less",
        "less_equal",
        "equal",
        "not_equal",
        "argmax",
        "tril_mask",
        "positions",
    }
    assert float_out <= set(calls)
    for name in sorted(float_out):
        args, attrs = calls[name]
        out = np.asarray(k32[name](*args, **attrs))
        assert out.dtype == np.float32, (name, out.dtype)


def test_float16_convolution(rng):
    from mithril.dtypes import DType
    from mithril_numpy.backend import NumpyBackend

    k16 = NumpyBackend(DType.float16).core_kernels()
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float16)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float16)
    out = k16["conv2d"](x, w, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    assert out.dtype == np.float16
    close(
        out.astype(np.float64),
        F.conv2d(t(x.astype(np.float64)), t(w.astype(np.float64)), None, 1, 1),
        atol=0.05,
        rtol=0.01,
    )
    assert k16["gelu"](x, approximate="tanh").dtype == np.float16


def test_max_pool2d_nan_routing_matches_torch(k64, rng):
    x = rng.standard_normal((2, 3, 7, 8))
    x[rng.random(x.shape) < 0.15] = np.nan
    attrs = dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 1))

    def fn(tx):
        return F.max_pool2d(tx, 3, 2, 1)

    out = k64["max_pool2d"](x, **attrs)
    np.testing.assert_array_equal(out, fn(t(x)).numpy())
    g = rng.standard_normal(out.shape)
    close(k64["max_pool2d_grad"](x, g, **attrs), _torch_grad(fn, x, g))
