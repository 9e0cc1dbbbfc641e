"""conv2d and pooling kernels and their gradient primitives.

Forward kernels are checked against loop-based NumPy oracles; gradient kernels
against NumPy oracles where they are simple (pooling) and, for all of them,
against torch autograd in float64 and the adjoint identity <f(x), g> = <x, f^T(g)>
evaluated with the NumPy forward oracle.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torch_oracles as ref

COVERED = (
    "conv2d",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "conv2d_backward",
    "max_pool2d",
    "max_pool2d_grad",
    "avg_pool2d",
    "avg_pool2d_grad",
)

CONV_CASES = [
    # input shape, weight shape, attrs
    ((2, 3, 7, 6), (4, 3, 3, 3), {}),
    ((1, 2, 8, 8), (3, 2, 3, 2), {"stride": (2, 1), "padding": (1, 0)}),
    ((2, 4, 9, 7), (6, 2, 3, 3), {"stride": (2, 2), "padding": (1, 2), "dilation": (1, 2), "groups": 2}),
    ((1, 3, 6, 6), (3, 1, 2, 2), {"dilation": (2, 2), "groups": 3}),
    ((1, 1, 8, 5), (2, 1, 1, 1), {"stride": (3, 2)}),  # stride leaves some input unused
]
FULL = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}


def _attrs(attrs):
    return {**FULL, **attrs}


@pytest.mark.parametrize("x_shape,w_shape,attrs", CONV_CASES, ids=range(len(CONV_CASES)))
def test_conv2d(x_shape, w_shape, attrs, kernels, case, rng):
    x, xr = case.put(rng.standard_normal(x_shape))
    w, wr = case.put(rng.standard_normal(w_shape))
    case.check(kernels["conv2d"](x, w, **_attrs(attrs)), ref.conv2d(xr, wr, **_attrs(attrs)), scale=10)


def test_conv2d_default_attrs(kernels, case, rng):
    x, xr = case.put(rng.standard_normal((1, 2, 5, 5)))
    w, wr = case.put(rng.standard_normal((3, 2, 3, 3)))
    case.check(kernels["conv2d"](x, w), ref.conv2d(xr, wr), scale=10)


def _conv_autograd(xr, wr, gr, attrs):
    x = torch.tensor(xr, requires_grad=True)
    w = torch.tensor(wr, requires_grad=True)
    F.conv2d(x, w, **attrs).backward(torch.tensor(gr))
    return x.grad.numpy(), w.grad.numpy()


@pytest.mark.parametrize("x_shape,w_shape,attrs", CONV_CASES, ids=range(len(CONV_CASES)))
def test_conv2d_grads(x_shape, w_shape, attrs, kernels, case, rng):
    attrs = _attrs(attrs)
    x, xr = case.put(rng.standard_normal(x_shape))
    w, wr = case.put(rng.standard_normal(w_shape))
    y_ref = ref.conv2d(xr, wr, **attrs)
    g, gr = case.put(rng.standard_normal(y_ref.shape))
    gx = kernels["conv2d_input_grad"](g, w, input_shape=x_shape, **attrs)
    gw = kernels["conv2d_weight_grad"](x, g, weight_shape=w_shape, **attrs)
    want_gx, want_gw = _conv_autograd(xr, wr, gr, attrs)
    case.check(gx, want_gx, scale=10)
    case.check(gw, want_gw, scale=30)
    # adjoint identities with the NumPy forward oracle (independent of torch)
    lhs = float((y_ref * gr).sum())
    assert float((xr * case.backend.to_numpy(gx)).sum()) == pytest.approx(lhs, rel=1e-4, abs=1e-3)
    assert float((wr * case.backend.to_numpy(gw)).sum()) == pytest.approx(lhs, rel=1e-4, abs=1e-3)


@pytest.mark.parametrize("wanted", [("input", "weight", "bias"), ("weight", "bias"), ("input", "weight")])
@pytest.mark.parametrize("x_shape,w_shape,attrs", CONV_CASES, ids=range(len(CONV_CASES)))
def test_conv2d_backward_is_one_call_for_the_wanted_gradients(x_shape, w_shape, attrs, wanted, kernels, case, rng):
    """The fused form (fuse.fuse_conv_backward): torch autograd of conv2d with a bias is the oracle."""
    attrs = _attrs(attrs)
    x, xr = case.put(rng.standard_normal(x_shape))
    w, wr = case.put(rng.standard_normal(w_shape))
    g, gr = case.put(rng.standard_normal(ref.conv2d(xr, wr, **attrs).shape))
    got = dict(zip(("input", "weight", "bias"), kernels["conv2d_backward"](x, w, g, wanted=wanted, **attrs)))
    xt, wt = torch.tensor(xr, requires_grad=True), torch.tensor(wr, requires_grad=True)
    bt = torch.zeros(w_shape[0], dtype=torch.float64, requires_grad=True)
    F.conv2d(xt, wt, bt, **attrs).backward(torch.tensor(gr))
    want = {"input": xt.grad.numpy(), "weight": wt.grad.numpy(), "bias": bt.grad.numpy()}
    for r in ("input", "weight", "bias"):
        if r in wanted:
            case.check(got[r], want[r], scale=30)
        else:
            assert got[r] is None, r


MAXPOOL_CASES = [
    ((2, 3, 6, 6), {"kernel_size": (2, 2), "stride": (2, 2)}),
    ((1, 2, 7, 5), {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 1)}),
    ((1, 2, 9, 9), {"kernel_size": (3, 3), "stride": (1, 2), "padding": (1, 0), "dilation": (2, 1)}),
    ((2, 1, 5, 8), {"kernel_size": (2, 3), "stride": (3, 3)}),
]


def _maxpool_attrs(attrs):
    return {"padding": (0, 0), "dilation": (1, 1), **attrs}


@pytest.mark.parametrize("x_shape,attrs", MAXPOOL_CASES, ids=range(len(MAXPOOL_CASES)))
def test_max_pool2d(x_shape, attrs, kernels, case, rng):
    attrs = _maxpool_attrs(attrs)
    x, xr = case.put(rng.standard_normal(x_shape))
    case.check(kernels["max_pool2d"](x, **attrs), ref.max_pool2d(xr, **attrs))


def test_max_pool2d_pads_with_minus_infinity(kernels, case):
    x, xr = case.put(-np.ones((1, 1, 2, 2)) - np.arange(4).reshape(1, 1, 2, 2))
    got = kernels["max_pool2d"](x, kernel_size=(2, 2), stride=(1, 1), padding=(1, 1), dilation=(1, 1))
    case.check(got, ref.max_pool2d(xr, (2, 2), (1, 1), (1, 1)))
    assert float(got.max()) == -1.0


@pytest.mark.parametrize("x_shape,attrs", MAXPOOL_CASES, ids=range(len(MAXPOOL_CASES)))
def test_max_pool2d_grad(x_shape, attrs, kernels, case, rng):
    attrs = _maxpool_attrs(attrs)
    x, xr = case.put(rng.standard_normal(x_shape))  # continuous values: no ties
    y_ref = ref.max_pool2d(xr, **attrs)
    g, gr = case.put(rng.standard_normal(y_ref.shape))
    got = kernels["max_pool2d_grad"](x, g, **attrs)
    case.check(got, ref.max_pool2d_grad(xr, gr, **attrs), scale=10)
    xt = torch.tensor(xr, requires_grad=True)
    F.max_pool2d(xt, **attrs).backward(torch.tensor(gr))
    case.check(got, xt.grad.numpy(), scale=10)


def test_max_pool2d_grad_ties_go_to_the_first_max(kernels, case):
    x, _xr = case.put(np.ones((1, 1, 2, 4)))
    g, _gr = case.put(np.array([[[[1.0, 2.0]]]]))
    got = kernels["max_pool2d_grad"](x, g, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1))
    case.check(got, np.array([[[[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]]))


AVGPOOL_CASES = [
    ((2, 3, 6, 6), {"kernel_size": (2, 2), "stride": (2, 2)}),
    ((1, 2, 7, 5), {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 1)}),
    ((1, 2, 7, 5), {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 1), "count_include_pad": False}),
    ((2, 1, 5, 8), {"kernel_size": (3, 3), "stride": (1, 2), "padding": (1, 0), "count_include_pad": False}),
    ((1, 1, 6, 6), {"kernel_size": (4, 4), "stride": (3, 3), "padding": (2, 2)}),
]


def _avgpool_attrs(attrs):
    return {"padding": (0, 0), "count_include_pad": True, **attrs}


@pytest.mark.parametrize("x_shape,attrs", AVGPOOL_CASES, ids=range(len(AVGPOOL_CASES)))
def test_avg_pool2d(x_shape, attrs, kernels, case, rng):
    attrs = _avgpool_attrs(attrs)
    x, xr = case.put(rng.standard_normal(x_shape))
    case.check(kernels["avg_pool2d"](x, **attrs), ref.avg_pool2d(xr, **attrs))


@pytest.mark.parametrize("x_shape,attrs", AVGPOOL_CASES, ids=range(len(AVGPOOL_CASES)))
def test_avg_pool2d_grad(x_shape, attrs, kernels, case, rng):
    attrs = _avgpool_attrs(attrs)
    _, xr = case.put(rng.standard_normal(x_shape))
    y_ref = ref.avg_pool2d(xr, **attrs)
    g, gr = case.put(rng.standard_normal(y_ref.shape))
    got = kernels["avg_pool2d_grad"](g, input_shape=x_shape, **attrs)
    want = ref.avg_pool2d_grad(gr, x_shape, **attrs)
    case.check(got, want)
    xt = torch.tensor(xr, requires_grad=True)
    F.avg_pool2d(xt, **attrs).backward(torch.tensor(gr))
    case.check(got, xt.grad.numpy())
    assert float((y_ref * gr).sum()) == pytest.approx(float((xr * want).sum()))


def test_pool_grads_accept_stride_none_as_kernel_size(kernels, case, rng):
    x, xr = case.put(rng.standard_normal((1, 1, 4, 4)))
    g, gr = case.put(rng.standard_normal((1, 1, 2, 2)))
    k = {"kernel_size": (2, 2), "padding": (0, 0)}
    case.check(
        kernels["max_pool2d_grad"](x, g, stride=None, dilation=(1, 1), **k),
        ref.max_pool2d_grad(xr, gr, stride=(2, 2), **k),
    )
    case.check(
        kernels["avg_pool2d_grad"](g, input_shape=(1, 1, 4, 4), stride=None, **k),
        ref.avg_pool2d_grad(gr, (1, 1, 4, 4), stride=(2, 2), **k),
    )
