"""sum, mean, max, min, argmax, softmax and log_softmax."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

AXES = [None, (0,), (1,), (-1,), (0, 2), (0, 1, 2)]


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(h, name, axis, keepdims):
    x, xn = h.data(3, 4, 5)
    h.check(h.run(name, x, axis=axis, keepdims=keepdims), getattr(np, name)(xn, axis=axis, keepdims=keepdims), scale=3)


@pytest.mark.parametrize("axis", [(0,), (1,), (-1,)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_argmax_first_of_ties(h, axis, keepdims):
    xn = np.array([[[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]], [[3.0, 3.0, 1.0], [0.0, 2.0, 2.0]]])
    x = h.b.array(xn)
    out = h.run("argmax", x, axis=axis, keepdims=keepdims)
    assert h.b.dtype_of(out).kind == "int"
    h.check(out, np.argmax(xn, axis=axis[0], keepdims=keepdims))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_log_softmax(h, axis):
    _x, xn = h.data(3, 4, 5)
    xn_big = xn * 50  # large values: numerical stability
    xb = h.b.array(xn_big)
    xn_big = h.b.to_numpy(xb).astype(np.float64)
    t = torch.from_numpy(xn_big)
    h.check(h.run("softmax", xb, axis=axis), torch.softmax(t, axis).numpy())
    h.check(h.run("log_softmax", xb, axis=axis), torch.log_softmax(t, axis).numpy(), scale=10)
