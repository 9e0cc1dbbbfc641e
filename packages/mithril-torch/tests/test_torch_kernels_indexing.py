"""gather_rows, scatter_add_rows, gather_last, scatter_last, unflatten, reshape_as, conv_transpose2d,
tril_mask, positions (the model zoo's primitives) against independent NumPy oracles."""

from __future__ import annotations

import numpy as np
import pytest
from torch_oracles import conv2d

COVERED = (
    "gather_rows",
    "scatter_add_rows",
    "gather_last",
    "scatter_last",
    "unflatten",
    "reshape_as",
    "conv_transpose2d",
    "tril_mask",
    "positions",
)


@pytest.mark.parametrize("ishape", [(4,), (2, 3), ()], ids=str)
def test_gather_rows_and_its_transpose(ishape, kernels, case, rng):
    w, wr = case.put(rng.standard_normal((5, 3)))
    idx = rng.integers(0, 5, ishape)
    i, ir = case.put(idx)
    case.check(kernels["gather_rows"](w, i), wr[ir])
    g, gr = case.put(rng.standard_normal(ishape + (3,)))
    want = np.zeros((5, 3))
    for pos in np.ndindex(*ishape):
        want[ir[pos]] += gr[pos]  # repeated indices accumulate
    case.check(kernels["scatter_add_rows"](g, i, num_rows=5), want)


def test_gather_last_and_its_transpose(kernels, case, rng):
    x, xr = case.put(rng.standard_normal((3, 2, 4)))
    i, ir = case.put(rng.integers(0, 4, (3, 2)))
    want = np.array([[xr[a, b, ir[a, b]] for b in range(2)] for a in range(3)])
    case.check(kernels["gather_last"](x, i), want)
    g, gr = case.put(rng.standard_normal((3, 2)))
    out = np.zeros((3, 2, 4))
    for a in range(3):
        for b in range(2):
            out[a, b, ir[a, b]] = gr[a, b]
    case.check(kernels["scatter_last"](g, i, size=4), out)


@pytest.mark.parametrize("axis,sizes", [(1, (2, -1)), (-1, (-1, 1)), (0, (1, 2)), (2, (5, 1))], ids=str)
def test_unflatten_and_reshape_as(axis, sizes, kernels, case, rng):
    x, xr = case.put(rng.standard_normal((2, 6, 5)))
    ax = axis % 3
    want_shape = list(xr.shape[:ax]) + list(sizes) + list(xr.shape[ax + 1 :])
    want = xr.reshape(want_shape)
    got = kernels["unflatten"](x, axis=axis, sizes=sizes)
    case.check(got, want)
    case.check(kernels["reshape_as"](got, x), xr)


@pytest.mark.parametrize(
    "stride,padding,output_padding,dilation,groups",
    [
        ((1, 1), (0, 0), (0, 0), (1, 1), 1),
        ((2, 1), (1, 0), (1, 0), (1, 2), 2),
        ((3, 2), (1, 1), (2, 1), (1, 1), 1),
    ],
    ids=str,
)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(
    stride, padding, output_padding, dilation, groups, kernels, case, rng
):
    """<conv_transpose2d(y, w), x> == <y, conv2d(x, w)> for the conv2d it transposes."""
    w, wr = case.put(rng.standard_normal((2 * groups, 2, 3, 2)))  # [in, out/groups, kh, kw]
    y, yr = case.put(rng.standard_normal((2, 2 * groups, 3, 4)))
    got = kernels["conv_transpose2d"](
        y, w, stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups
    )
    h = (3 - 1) * stride[0] - 2 * padding[0] + dilation[0] * 2 + output_padding[0] + 1
    wd = (4 - 1) * stride[1] - 2 * padding[1] + dilation[1] * 1 + output_padding[1] + 1
    assert tuple(got.shape) == (2, 2 * groups, h, wd)
    x = rng.standard_normal((2, 2 * groups, h, wd))
    fwd = conv2d(x, wr, stride=stride, padding=padding, dilation=dilation, groups=groups)
    lhs = float(np.sum(case.backend.to_numpy(got).astype(np.float64) * x))
    rhs = float(np.sum(yr * fwd))
    assert lhs == pytest.approx(rhs, rel=1e-4 if case.backend.dtype.value == "float32" else 1e-10)


@pytest.mark.parametrize("diagonal", [0, 1, -1])
def test_tril_mask(diagonal, kernels, case, rng):
    x, _ = case.put(rng.standard_normal((2, 3, 4)))
    case.check(kernels["tril_mask"](x, diagonal=diagonal), np.tril(np.ones((3, 4), bool), diagonal))


@pytest.mark.parametrize("axis", [0, 1, -1, -3])
def test_positions(axis, kernels, case, rng):
    x, _ = case.put(rng.standard_normal((2, 3, 4)))
    got = kernels["positions"](x, axis=axis)
    assert str(got.device) == str(x.device) and not got.is_floating_point()
    case.check(got, np.arange((2, 3, 4)[axis]))
