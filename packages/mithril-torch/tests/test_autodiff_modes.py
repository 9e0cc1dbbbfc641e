"""Both gradient paths (core autodiff pass, torch.autograd) agree with torch.nn."""

import pytest
import torch

import mithril as ml
from mithril.errors import UnsupportedError
from mithril.models import Conv2d, Flatten, Linear, MaxPool2d, Model, Relu
from mithril_torch import TorchBackend


def cnn() -> Model:
    m = Model()
    m |= Conv2d(in_channels=2, out_channels=3, kernel_size=3, padding=1)
    m += Relu()
    m += MaxPool2d(kernel_size=2)
    m += Flatten()
    m += Linear(dimension=4)
    return m


@pytest.mark.parametrize("autodiff", ["mithril", "torch"])
def test_gradients_match_torch_nn(autodiff):
    be = TorchBackend(dtype=ml.float64, autodiff=autodiff)
    pm = ml.compile(cnn(), be, shapes={"input": [2, 2, 4, 4]})
    params = pm.randomize_params(seed=0)
    x = be.randn(2, 2, 4, 4)
    out = pm.evaluate(params, {"input": x})["output"]
    g = be.randn(*out.shape)
    _, grads = pm.evaluate(params, {"input": x}, {"output": g})
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(12, 4),
    ).double()
    names = {
        "0.weight": "conv2d_0.weight",
        "0.bias": "conv2d_0.bias",
        "4.weight": "linear_0.weight",
        "4.bias": "linear_0.bias",
    }
    net.load_state_dict({k: params[v] for k, v in names.items()})
    y = net(x)
    torch.testing.assert_close(out, y, rtol=1e-12, atol=1e-12)
    y.backward(g)
    for k, v in names.items():
        torch.testing.assert_close(grads[v], dict(net.named_parameters())[k].grad, rtol=1e-10, atol=1e-12)
    assert all(not t.requires_grad for t in grads.values())


def test_unknown_autodiff_mode_is_rejected():
    with pytest.raises(UnsupportedError, match="autodiff"):
        TorchBackend(autodiff="jax")


def test_saved_statistics_and_indices_are_not_recomputed():
    """The gradient reads max pooling's indices and BatchNorm's statistics from the forward call."""
    from mithril.models import BatchNorm2d

    m = Model()
    m |= Conv2d(in_channels=2, out_channels=3, kernel_size=3, padding=1)
    m += BatchNorm2d(3)
    m += Relu()
    m += MaxPool2d(kernel_size=2)
    m += Flatten()
    m += Linear(dimension=4)
    be = TorchBackend(dtype=ml.float64)
    pm = ml.compile(m, be, shapes={"input": [4, 2, 4, 4]})
    params = pm.randomize_params(seed=1)
    x = be.randn(4, 2, 4, 4)
    g = be.randn(4, 4)
    out, grads, state = pm.evaluate(params, {"input": x}, {"output": g}, return_state=True)
    src = pm.source
    assert src.count("k_max_pool2d_with_indices(") == 1 and "k_max_pool2d_grad_indices(" in src
    assert "k_max_pool2d(" not in src and "k_max_pool2d_grad(" not in src
    assert src.count("k_normalize_affine(") == 1 and "k_normalize_affine_grad(" in src and "k_mean(" not in src

    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1),
        torch.nn.BatchNorm2d(3),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(12, 4),
    ).double()
    names = {
        "0.weight": "conv2d_0.weight",
        "0.bias": "conv2d_0.bias",
        "1.weight": "batchnorm2d_0.weight",
        "1.bias": "batchnorm2d_0.bias",
        "1.running_mean": "batchnorm2d_0.running_mean",
        "1.running_var": "batchnorm2d_0.running_var",
        "5.weight": "linear_0.weight",
        "5.bias": "linear_0.bias",
    }
    net.load_state_dict({k: params[v] for k, v in names.items()}, strict=False)
    y = net(x)
    torch.testing.assert_close(out["output"], y, rtol=1e-12, atol=1e-12)
    y.backward(g)
    named = dict(net.named_parameters())
    for k, v in names.items():
        if k in named:
            torch.testing.assert_close(grads[v], named[k].grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(state["batchnorm2d_0.running_mean"], net[1].running_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state["batchnorm2d_0.running_var"], net[1].running_var, rtol=1e-10, atol=1e-12)
