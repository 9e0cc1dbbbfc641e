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
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(12, 4)).double()
    names = {"0.weight": "conv2d_0.weight", "0.bias": "conv2d_0.bias", "4.weight": "linear_0.weight",
             "4.bias": "linear_0.bias"}
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
