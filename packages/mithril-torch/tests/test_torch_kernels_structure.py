"""matmul, transpose, reshape, flatten, broadcast_to, concat, slice, slice_grad against NumPy."""

from __future__ import annotations

import numpy as np
import pytest

COVERED = ("matmul", "transpose", "reshape", "flatten", "broadcast_to", "concat", "slice", "slice_grad")


@pytest.mark.parametrize(
    "shapes",
    [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((1, 3, 4), (6, 4, 2)), ((4, 3), (2, 3, 2))],
    ids=str,
)
def test_matmul(shapes, kernels, case, rng):
    x, xr = case.put(rng.standard_normal(shapes[0]))
    y, yr = case.put(rng.standard_normal(shapes[1]))
    case.check(kernels["matmul"](x, y), np.matmul(xr, yr))


@pytest.mark.parametrize("axes", [None, (0, 1, 2), (2, 0, 1), (1, 0, 2), (-1, 0, -2)], ids=str)
def test_transpose(axes, kernels, case, rng):
    x, xr = case.put(rng.standard_normal((2, 3, 4)))
    case.check(kernels["transpose"](x, axes=axes), np.transpose(xr, axes))


def test_transpose_default_reverses(kernels, case, rng):
    x, xr = case.put(rng.standard_normal((2, 3, 4, 5)))
    case.check(kernels["transpose"](x), xr.T)


@pytest.mark.parametrize("shape", [(6, 4), (-1,), (2, -1, 3), (24,), (1, 2, 3, 4)], ids=str)
def test_reshape(shape, kernels, case, rng):
    x, xr = case.put(rng.standard_normal((2, 3, 4)))
    case.check(kernels["reshape"](x, shape=shape), xr.reshape(shape))


def test_reshape_of_non_contiguous(kernels, case, rng):
    x, xr = case.put(rng.standard_normal((3, 4)))
    t = kernels["transpose"](x)
    case.check(kernels["reshape"](t, shape=(12,)), xr.T.reshape(12))


@pytest.mark.parametrize("start,end", [(1, -1), (0, -1), (0, 1), (1, 2), (-2, -1), (2, 2)])
def test_flatten(start, end, kernels, case, rng):
    data = rng.standard_normal((2, 3, 4, 5))
    x, xr = case.put(data)
    s, e = start % 4, end % 4
    want = xr.reshape(xr.shape[:s] + (-1,) + xr.shape[e + 1 :])
    case.check(kernels["flatten"](x, start_axis=start, end_axis=end), want)


def test_flatten_defaults(kernels, case, rng):
    x, xr = case.put(rng.standard_normal((2, 3, 4)))
    case.check(kernels["flatten"](x), xr.reshape(2, 12))


@pytest.mark.parametrize("src,shape", [((3,), (2, 3)), ((2, 1), (2, 5)), ((1, 3, 1), (4, 3, 2)), ((), (2, 2))], ids=str)
def test_broadcast_to(src, shape, kernels, case, rng):
    x, xr = case.put(rng.standard_normal(src))
    case.check(kernels["broadcast_to"](x, shape=shape), np.broadcast_to(xr, shape))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis, kernels, case, rng):
    shapes = {0: [(1, 3), (2, 3), (4, 3)], 1: [(2, 1), (2, 3), (2, 2)], -1: [(2, 1), (2, 3), (2, 2)]}[axis]
    pairs = [case.put(rng.standard_normal(s)) for s in shapes]
    got = kernels["concat"](*[t for t, _ in pairs], axis=axis)
    case.check(got, np.concatenate([r for _, r in pairs], axis=axis))


def test_concat_single_and_default_axis(kernels, case, rng):
    x, xr = case.put(rng.standard_normal((2, 3)))
    case.check(kernels["concat"](x), xr)
    case.check(kernels["concat"](x, x), np.concatenate([xr, xr]))


SLICES = [
    ((1,), (3,), (None,)),
    ((None,), (None,), (None,)),
    ((None, 1), (None, None), (None, 2)),
    ((-3,), (None,), (1,)),
    ((None,), (None,), (-1,)),
    ((None, None), (None, None), (-1, -2)),
    ((4, 3), (0, None), (-2, -1)),
    ((-1, None, 1), (-5, None, 4), (-2, None, 2)),
    ((None, 1, 0), (None, None, 3), (3, -1, 1)),
    ((2,), (2,), (1,)),  # empty
    ((1,), (4,), (-1,)),  # empty with a negative step
    ((-10,), (10,), (2,)),  # out of range bounds are clipped
    ((10,), (-10,), (-3,)),
    ((None, None, None), (None, None, None), (None, None, -1)),
]


@pytest.mark.parametrize("starts,stops,steps", SLICES, ids=str)
def test_slice(starts, stops, steps, kernels, case, rng):
    x, xr = case.put(rng.standard_normal((6, 5, 4)))
    want = xr[tuple(slice(a, b, c) for a, b, c in zip(starts, stops, steps))]
    case.check(kernels["slice"](x, starts=starts, stops=stops, steps=steps), want)


@pytest.mark.parametrize("starts,stops,steps", SLICES, ids=str)
def test_slice_grad(starts, stops, steps, kernels, case, rng):
    shape = (6, 5, 4)
    index = tuple(slice(a, b, c) for a, b, c in zip(starts, stops, steps))
    g_shape = np.empty(shape)[index].shape
    g, gr = case.put(rng.standard_normal(g_shape))
    want = np.zeros(shape)
    want[index] = gr
    got = kernels["slice_grad"](g, input_shape=shape, starts=starts, stops=stops, steps=steps)
    case.check(got, want)


def test_slice_grad_is_the_transpose_of_slice(kernels, backend, rng):
    """<slice(x), g> == <x, slice_grad(g)> for every case with a negative step."""
    x = backend.array(rng.standard_normal((6, 5, 4)))
    for starts, stops, steps in SLICES:
        y = kernels["slice"](x, starts=starts, stops=stops, steps=steps)
        g = backend.array(rng.standard_normal(tuple(y.shape)))
        back = kernels["slice_grad"](g, input_shape=(6, 5, 4), starts=starts, stops=stops, steps=steps)
        lhs, rhs = float((y * g).sum()), float((x * back).sum())
        assert lhs == pytest.approx(rhs, rel=1e-4, abs=1e-5)


def test_slice_of_ints(kernels, backend):
    x = backend.array(np.arange(10))
    assert kernels["slice"](x, starts=(None,), stops=(None,), steps=(-3,)).tolist() == [9, 6, 3, 0]
