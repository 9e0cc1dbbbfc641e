"""Both gradient paths (core autodiff pass, jax.vjp) agree, eager and jitted."""

import numpy as np
import pytest

import mithril as ml
from mithril.errors import UnsupportedError
from mithril.models import BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Model, Relu
from mithril_jax import JaxBackend


def cnn() -> Model:
    m = Model()
    m |= Conv2d(in_channels=2, out_channels=3, kernel_size=3, padding=1)
    m += BatchNorm2d(num_features=3)
    m += Relu()
    m += MaxPool2d(kernel_size=2)
    m += Flatten()
    m += Linear(dimension=4)
    return m


@pytest.mark.parametrize("jit", [False, True])
def test_vjp_path_matches_the_core_path(jit):
    results = []
    for autodiff in ("mithril", "jax"):
        be = JaxBackend(dtype=ml.float64, autodiff=autodiff)
        pm = ml.compile(cnn(), be, shapes={"input": [2, 2, 4, 4]}, jit=jit)
        be.seed(0)
        params = pm.randomize_params()
        x = be.randn(2, 2, 4, 4)
        g = be.randn(2, 4)
        out, grads, state = pm.evaluate(params, {"input": x}, {"output": g}, return_state=True)
        results.append((out, grads, state))
    (o1, g1, s1), (o2, g2, s2) = results
    np.testing.assert_allclose(o1["output"], o2["output"], rtol=1e-12)
    assert set(g1) == set(g2)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-9, atol=1e-12)
    for k in s1:
        np.testing.assert_allclose(s1[k], s2[k], rtol=1e-12)


def test_unknown_autodiff_mode_is_rejected():
    with pytest.raises(UnsupportedError, match="autodiff"):
        JaxBackend(autodiff="torch")
