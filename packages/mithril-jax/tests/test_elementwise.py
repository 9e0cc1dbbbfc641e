"""Element-wise kernels against NumPy formulas and torch.nn.functional (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

BINARY = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "maximum": np.maximum,
    "minimum": np.minimum,
}
COMPARE = {
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "equal": np.equal,
    "not_equal": np.not_equal,
}
SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((), (2, 3))]


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_binary_broadcasts(h, name, shapes):
    (x, xn), (y, yn) = h.data(*shapes[0]), h.data(*shapes[1], low=0.5, high=2.0)
    h.check(h.run(name, x, y), BINARY[name](xn, yn))


def test_pow(h):
    (x, xn), (y, yn) = h.data(3, 4, low=0.1, high=3.0), h.data(4, low=-2.0, high=2.0)
    h.check(h.run("pow", x, y), np.power(xn, yn))


@pytest.mark.parametrize("name", sorted(COMPARE))
def test_comparisons_give_bool(h, name):
    x, xn = h.data(4, 5)
    y = h.b.array(np.where(np.arange(5) % 2 == 0, xn[0], 0.25))  # ties included
    yn = h.b.to_numpy(y).astype(np.float64)
    out = h.run(name, x, y)
    assert h.b.to_numpy(out).dtype == np.bool_
    h.check(out, COMPARE[name](xn, yn))


def test_where(h):
    (x, xn), (y, yn) = h.data(3, 4), h.data(4)
    cond = h.b.array(xn > 0)
    h.check(h.run("where", cond, x, y), np.where(xn > 0, xn, yn))


def test_cast(h):
    x = h.b.array([-2.7, -0.5, 0.0, 0.5, 3.9])
    h.check(h.run("cast", x, kind="int"), np.array([-2, 0, 0, 0, 3]))
    assert h.b.dtype_of(h.run("cast", x, kind="int")).value == ("int64" if h.b.uses_x64 else "int32")
    h.check(h.run("cast", x, kind="bool"), np.array([True, True, False, True, True]))
    i = h.b.array([1, 2, 3])
    h.check(h.run("cast", i, kind="float"), np.array([1.0, 2.0, 3.0]))
    h.check(h.run("cast", h.b.array([True, False]), kind="float"), np.array([1.0, 0.0]))


def _t(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


UNARY = {
    "neg": np.negative,
    "abs": np.abs,
    "sign": np.sign,
    "exp": np.exp,
    "sin": np.sin,
    "cos": np.cos,
    "tanh": np.tanh,
    "sigmoid": lambda a: torch.sigmoid(_t(a)).numpy(),
    "relu": lambda a: F.relu(_t(a)).numpy(),
    "erf": lambda a: torch.erf(_t(a)).numpy(),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(h, name):
    x, xn = h.data(5, 6, low=-4.0, high=4.0)
    h.check(h.run(name, x), UNARY[name](xn))


@pytest.mark.parametrize("name", ["log", "sqrt"])
def test_unary_positive(h, name):
    x, xn = h.data(5, 6, low=0.01, high=5.0)
    h.check(h.run(name, x), getattr(np, name)(xn))


def test_sign_and_relu_at_zero_and_nan(h):
    x = h.b.array([0.0, -0.0, 1.5, -2.0, math.nan])
    xn = h.b.to_numpy(x).astype(np.float64)
    h.check(h.run("sign", x), np.sign(xn))
    h.check(h.run("relu", x), F.relu(_t(xn)).numpy())


@pytest.mark.parametrize("slope", [0.01, 0.2])
def test_leaky_relu(h, slope):
    x, xn = h.data(4, 7)
    h.check(h.run("leaky_relu", x, slope=slope), F.leaky_relu(_t(xn), slope).numpy())


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_matches_torch(h, approximate):
    x, xn = h.data(6, 7, low=-6.0, high=6.0)
    h.check(h.run("gelu", x, approximate=approximate), F.gelu(_t(xn), approximate=approximate).numpy())


def test_gelu_rejects_unknown_approximation(h):
    from mithril.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="approximate"):
        h.run("gelu", h.b.ones(2), approximate="sigmoid")
