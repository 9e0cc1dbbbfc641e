"""Element-wise kernels against NumPy float64 formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch_oracles as ref

COVERED = (
    "neg",
    "abs",
    "sign",
    "exp",
    "log",
    "sqrt",
    "sin",
    "cos",
    "tanh",
    "sigmoid",
    "relu",
    "erf",
    "leaky_relu",
    "gelu",
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "maximum",
    "minimum",
    "greater",
    "greater_equal",
    "less",
    "less_equal",
    "equal",
    "not_equal",
    "where",
    "cast",
)

UNARY = {
    "neg": np.negative,
    "abs": np.abs,
    "sign": np.sign,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "sin": np.sin,
    "cos": np.cos,
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "relu": lambda x: np.maximum(x, 0.0),
    "erf": ref.erf,
}
POSITIVE_ONLY = {"log", "sqrt"}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name, kernels, case, rng):
    data = rng.standard_normal((3, 4, 5)) * 2
    data[0, 0, :3] = [0.0, -0.0, 1.0]
    if name in POSITIVE_ONLY:
        data = np.abs(data) + 0.1
    x, xr = case.put(data)
    case.check(kernels[name](x), UNARY[name](xr))


@pytest.mark.parametrize("slope", [0.01, 0.2])
def test_leaky_relu(slope, kernels, case, rng):
    x, xr = case.put(rng.standard_normal((4, 6)))
    case.check(kernels["leaky_relu"](x, slope=slope), np.where(xr > 0, xr, slope * xr))


def test_leaky_relu_default(kernels, case, rng):
    x, xr = case.put(rng.standard_normal((10,)))
    case.check(kernels["leaky_relu"](x), np.where(xr > 0, xr, 0.01 * xr))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate, kernels, case, rng):
    x, xr = case.put(rng.standard_normal((4, 7)) * 3)
    case.check(kernels["gelu"](x, approximate=approximate), ref.gelu(xr, approximate))


def test_sign_of_ints(kernels, backend):
    x = backend.array(np.array([-3, 0, 5]))
    out = kernels["sign"](x)
    assert out.dtype == torch.int64
    assert out.tolist() == [-1, 0, 1]
    assert kernels["abs"](x).tolist() == [3, 0, 5]
    assert kernels["neg"](x).tolist() == [3, 0, -5]


BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "pow": np.power,
    "maximum": np.maximum,
    "minimum": np.minimum,
}

SHAPE_PAIRS = [((3, 4), (3, 4)), ((2, 1, 4), (3, 1)), ((4,), (5, 4)), ((), (2, 3)), ((2, 3), ())]


@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_broadcasting(name, shapes, kernels, case, rng):
    a = rng.standard_normal(shapes[0])
    b = rng.standard_normal(shapes[1])
    if name == "pow":
        a = np.abs(a) + 0.5
    if name == "div":
        b = np.sign(b) * (np.abs(b) + 0.5)
    x, xr = case.put(a)
    y, yr = case.put(b)
    case.check(kernels[name](x, y), BINARY[name](xr, yr))


def test_integer_arithmetic_stays_integer(kernels, backend):
    x = backend.array(np.array([[1, 2], [3, 4]]))
    y = backend.array(np.array([10, 20]))
    for name in ("add", "sub", "mul", "maximum", "minimum"):
        out = kernels[name](x, y)
        assert out.dtype == torch.int64
        n = backend.to_numpy
        np.testing.assert_array_equal(n(out), BINARY[name](n(x), n(y)))


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow"])
def test_python_scalar_on_either_side(name, kernels, case, rng):
    """Arithmetic kernels also take a Python float on either side and keep the backend dtype."""
    x, xr = case.put(np.abs(rng.standard_normal((3,))) + 0.5)
    case.check(kernels[name](x, 1.5), BINARY[name](xr, 1.5))
    case.check(kernels[name](1.5, x), BINARY[name](1.5, xr))


def test_zero_dim_constant_keeps_dtype(kernels, case, backend, rng):
    x, xr = case.put(rng.standard_normal((2, 3)))
    c = backend.constant(np.array(0.5))
    case.check(kernels["mul"](c, x), 0.5 * xr)
    case.check(kernels["maximum"](x, c), np.maximum(xr, 0.5))


COMPARE = {
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "equal": np.equal,
    "not_equal": np.not_equal,
}


@pytest.mark.parametrize("name", sorted(COMPARE))
def test_compare(name, kernels, case, rng):
    # small integers as floats so that ties (equality) occur
    x, xr = case.put(rng.integers(-2, 3, (4, 1, 5)).astype(float))
    y, yr = case.put(rng.integers(-2, 3, (3, 5)).astype(float))
    case.check(kernels[name](x, y), COMPARE[name](xr, yr))


@pytest.mark.parametrize("name", sorted(COMPARE))
def test_compare_ints_and_scalar(name, kernels, backend):
    x = backend.array(np.array([-1, 0, 1, 2]))
    got = kernels[name](x, backend.array(np.array(1)))
    assert got.dtype == torch.bool
    np.testing.assert_array_equal(backend.to_numpy(got), COMPARE[name](backend.to_numpy(x), 1))


def test_where_broadcasts(kernels, case, rng):
    c, cr = case.put(rng.standard_normal((3, 1, 4)) > 0)
    x, xr = case.put(rng.standard_normal((2, 4)))
    y, yr = case.put(rng.standard_normal((3, 2, 1)))
    assert c.dtype == torch.bool
    case.check(kernels["where"](c, x, y), np.where(cr, xr, yr))


def test_where_with_zero_dim_constant(kernels, case, backend, rng):
    c, cr = case.put(rng.standard_normal((5,)) > 0)
    x, xr = case.put(rng.standard_normal((5,)))
    zero = backend.constant(np.array(0.0))
    case.check(kernels["where"](c, x, zero), np.where(cr, xr, 0.0))


def test_cast_float_to_int_and_bool(kernels, case):
    x, xr = case.put(np.array([-2.7, -0.5, 0.0, 0.5, 3.9]))
    case.check(kernels["cast"](x, kind="int"), xr.astype(np.int64))  # truncation toward zero
    case.check(kernels["cast"](x, kind="bool"), xr.astype(bool))
    case.check(kernels["cast"](x, kind="float"), xr)
    case.check(kernels["cast"](x), xr)  # default kind is float


def test_cast_to_backend_float_dtype(kernels, backend):
    for src in (np.array([True, False]), np.array([1, -2], dtype=np.int64), np.array([1, 2], dtype=np.int32)):
        out = kernels["cast"](backend.array(src), kind="float")
        assert out.dtype == backend.torch_dtype
        np.testing.assert_array_equal(backend.to_numpy(out), src.astype(np.float64))
    ints = kernels["cast"](backend.array(np.array([1, 2], dtype=np.int32)), kind="int")
    assert ints.dtype == torch.int64


def test_cast_rejects_unknown_kind(kernels, backend):
    with pytest.raises(ValueError, match="kind"):
        kernels["cast"](backend.zeros(2), kind="complex")


def test_erf_oracle_sanity():
    assert ref.erf(np.array([0.0, 10.0]))[1] == pytest.approx(1.0)
    assert ref.gelu(np.array([1.0]), "none")[0] == pytest.approx(0.5 * (1 + math.erf(1 / math.sqrt(2))))
