"""conv2d, max_pool2d, avg_pool2d and their gradients against torch (float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

# (input shape, weight shape, stride, padding, dilation, groups)
CONVS = [
    ((2, 3, 8, 8), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((1, 2, 9, 7), (3, 2, 3, 2), (2, 2), (0, 0), (1, 1), 1),
    ((2, 4, 10, 9), (6, 2, 3, 3), (2, 1), (1, 2), (1, 1), 2),
    ((1, 2, 11, 11), (2, 2, 3, 3), (3, 2), (2, 1), (2, 3), 1),
    ((2, 6, 7, 8), (6, 1, 2, 3), (1, 2), (1, 0), (2, 1), 6),
]


def _t(a, grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CONVS, ids=str)
def test_conv2d_and_gradients(h, xs, ws, stride, padding, dilation, groups):
    (x, xn), (w, wn) = h.data(*xs), h.data(*ws)
    attrs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    tx, tw = _t(xn, True), _t(wn, True)
    ty = F.conv2d(tx, tw, stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = h.run("conv2d", x, w, **attrs)
    h.check(y, ty.detach().numpy(), scale=10)

    g, gn = h.data(*ty.shape)
    ty.backward(_t(gn))
    h.check(h.run("conv2d_input_grad", g, w, input_shape=xs, **attrs), tx.grad.numpy(), scale=10)
    h.check(h.run("conv2d_weight_grad", x, g, weight_shape=ws, **attrs), tw.grad.numpy(), scale=20)


# (input shape, kernel, stride, padding, dilation)
POOLS = [
    ((2, 3, 8, 8), (2, 2), (2, 2), (0, 0), (1, 1)),
    ((1, 2, 9, 7), (3, 3), (2, 2), (1, 1), (1, 1)),
    ((2, 2, 10, 11), (3, 2), (1, 2), (1, 1), (1, 1)),
    ((1, 2, 11, 10), (3, 3), (2, 1), (1, 0), (2, 3)),
    ((1, 1, 5, 5), (3, 3), (1, 1), (1, 1), (1, 1)),
]


def _torch_max_pool(xn, gn, kernel, stride, padding, dilation):
    tx = _t(xn, True)
    ty = F.max_pool2d(tx, kernel, stride, padding, dilation)
    ty.backward(_t(gn))
    return ty.detach().numpy(), tx.grad.numpy()


@pytest.mark.parametrize("xs,kernel,stride,padding,dilation", POOLS, ids=str)
def test_max_pool2d_and_gradient(h, xs, kernel, stride, padding, dilation):
    x, xn = h.data(*xs)
    attrs = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation)
    y = h.run("max_pool2d", x, **attrs)
    g, gn = h.data(*h.b.shape_of(y))
    ty, tgrad = _torch_max_pool(xn, gn, kernel, stride, padding, dilation)
    h.check(y, ty)
    h.check(h.run("max_pool2d_grad", x, g, **attrs), tgrad)


@pytest.mark.parametrize("xs,kernel,stride,padding,dilation", POOLS, ids=str)
def test_max_pool2d_grad_tie_rule_matches_torch(h, xs, kernel, stride, padding, dilation):
    # few distinct values: many ties inside (overlapping) windows; -inf and NaN too
    xn = h.rng.integers(0, 3, xs).astype(np.float64)
    xn.flat[::7] = -math.inf
    attrs = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation)
    x = h.b.array(xn)
    y = h.run("max_pool2d", x, **attrs)
    g, gn = h.data(*h.b.shape_of(y))
    ty, tgrad = _torch_max_pool(xn, gn, kernel, stride, padding, dilation)
    h.check(y, ty)
    h.check(h.run("max_pool2d_grad", x, g, **attrs), tgrad)


def test_max_pool2d_grad_all_minus_inf_and_nan_windows(h):
    xn = np.full((1, 1, 4, 4), -math.inf)
    xn[0, 0, 2, 2] = math.nan
    xn[0, 0, 2, 3] = math.nan
    xn[0, 0, 0, 3] = 1.0
    attrs = dict(kernel_size=(2, 2), stride=(1, 1), padding=(1, 1), dilation=(1, 1))
    x = h.b.array(xn)
    y = h.run("max_pool2d", x, **attrs)
    g, gn = h.data(*h.b.shape_of(y))
    ty, tgrad = _torch_max_pool(xn, gn, (2, 2), (1, 1), (1, 1), (1, 1))
    np.testing.assert_array_equal(np.isnan(h.b.to_numpy(y)), np.isnan(ty))
    h.check(h.run("max_pool2d_grad", x, g, **attrs), tgrad)


AVG_POOLS = [
    ((2, 3, 8, 8), (2, 2), (2, 2), (0, 0)),
    ((1, 2, 9, 7), (3, 3), (2, 2), (1, 1)),
    ((2, 2, 10, 11), (3, 2), (1, 2), (1, 1)),
    ((1, 2, 11, 10), (5, 4), (3, 1), (2, 2)),
]


@pytest.mark.parametrize("xs,kernel,stride,padding", AVG_POOLS, ids=str)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool2d_and_gradient(h, xs, kernel, stride, padding, count_include_pad):
    x, xn = h.data(*xs)
    attrs = dict(kernel_size=kernel, stride=stride, padding=padding, count_include_pad=count_include_pad)
    tx = _t(xn, True)
    ty = F.avg_pool2d(tx, kernel, stride, padding, count_include_pad=count_include_pad)
    h.check(h.run("avg_pool2d", x, **attrs), ty.detach().numpy())
    g, gn = h.data(*ty.shape)
    ty.backward(_t(gn))
    h.check(h.run("avg_pool2d_grad", g, input_shape=xs, **attrs), tx.grad.numpy())


def test_nn_kernels_compose_under_jit(h):
    import jax

    (x, xn), (w, wn) = h.data(2, 3, 8, 8), h.data(4, 3, 3, 3)
    conv, pool = h.b.kernel("conv2d"), h.b.kernel("max_pool2d")

    def fn(inputs):
        y = conv(inputs["x"], inputs["w"], stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
        return {"y": pool(y, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1))}

    out = h.b.jit(fn, what="evaluate")({"x": x, "w": w})["y"]
    assert isinstance(out, jax.Array)
    expected = F.max_pool2d(F.conv2d(_t(xn), _t(wn), padding=1), 2, 2).numpy()
    h.check(out, expected, scale=10)
