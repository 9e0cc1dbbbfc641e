"""matmul, transpose, reshape, flatten, broadcast_to, concat, slice, slice_grad."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    "shapes", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((1, 3, 4), (2, 4, 6))], ids=str
)
def test_matmul_broadcasts_batch(h, shapes):
    (a, an), (b, bn) = h.data(*shapes[0]), h.data(*shapes[1])
    h.check(h.run("matmul", a, b), np.matmul(an, bn), scale=5)


@pytest.mark.parametrize("axes", [None, (1, 0, 2), (2, 0, 1), (-1, 0, 1)])
def test_transpose(h, axes):
    x, xn = h.data(2, 3, 4)
    h.check(h.run("transpose", x, axes=axes), np.transpose(xn, axes))


@pytest.mark.parametrize("shape", [(6, 4), (-1, 2), (2, 3, 4), (24,)])
def test_reshape(h, shape):
    x, xn = h.data(2, 3, 4)
    h.check(h.run("reshape", x, shape=shape), xn.reshape(shape))


@pytest.mark.parametrize("start,end", [(1, -1), (0, -1), (0, 1), (1, 2), (-2, -1), (2, 2)])
def test_flatten_matches_torch(h, start, end):
    x, xn = h.data(2, 3, 4, 5)
    h.check(
        h.run("flatten", x, start_axis=start, end_axis=end), torch.flatten(torch.from_numpy(xn), start, end).numpy()
    )


def test_flatten_scalar_gives_one_element(h):
    x = h.b.array(3.0)
    h.check(h.run("flatten", x, start_axis=0, end_axis=-1), np.array([3.0]))


def test_broadcast_to(h):
    x, xn = h.data(3, 1)
    h.check(h.run("broadcast_to", x, shape=(2, 3, 4)), np.broadcast_to(xn, (2, 3, 4)))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_variadic(h, axis):
    parts = [h.data(2, 3, 4) for _ in range(3)]
    h.check(h.run("concat", *(p[0] for p in parts), axis=axis), np.concatenate([p[1] for p in parts], axis=axis))


SLICES = [
    ((1,), (4,), (None,)),
    ((None, 1), (None, None), (None, 2)),
    ((None, None), (None, None), (-1, -2)),
    ((-3, 4), (None, 0), (1, -1)),
    ((0, 0, 1), (5, 6, 3), (2, 3, 1)),
]


@pytest.mark.parametrize("starts,stops,steps", SLICES, ids=str)
def test_slice(h, starts, stops, steps):
    x, xn = h.data(5, 6, 3)
    idx = tuple(slice(a, b, c) for a, b, c in zip(starts, stops, steps))
    h.check(h.run("slice", x, starts=starts, stops=stops, steps=steps), xn[idx])


@pytest.mark.parametrize("starts,stops,steps", SLICES, ids=str)
def test_slice_grad(h, starts, stops, steps):
    idx = tuple(slice(a, b, c) for a, b, c in zip(starts, stops, steps))
    shape = (5, 6, 3)
    g, gn = h.data(*np.empty(shape)[idx].shape)
    expected = np.zeros(shape)
    expected[idx] = gn
    h.check(h.run("slice_grad", g, input_shape=shape, starts=starts, stops=stops, steps=steps), expected)


def test_list_attributes_are_accepted(h):
    x, xn = h.data(5, 6)
    out = h.run("slice", x, starts=[1, None], stops=[4, None], steps=[None, 2])
    h.check(out, xn[1:4, ::2])
    h.check(h.run("reshape", x, shape=[3, 10]), xn.reshape(3, 10))
