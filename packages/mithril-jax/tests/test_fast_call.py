"""The jitted fast path of evaluate: it skips Mithril's checks only for arguments those checks passed."""

from __future__ import annotations

import numpy as np
import pytest

import mithril as ml
from mithril.errors import EvaluationError, MithrilError
from mithril.models import Linear, Model, Relu

jnp = pytest.importorskip("jax.numpy")


@pytest.fixture()
def setup():
    be = ml.JaxBackend(dtype=ml.float32)
    model = Model()
    model |= Linear(dimension=8)(input="input")
    model += Relu()
    model += Linear(dimension=3)
    pm = ml.compile(model, be, shapes={"input": [4, 5]}, jit=True)
    params = pm.randomize_params(seed=0)
    x = be.randn(4, 5)
    return be, pm, params, x


def _reference(params, x):
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    h = np.maximum(np.asarray(x, np.float64) @ p["linear_0.weight"].T + p["linear_0.bias"], 0)
    return h @ p["linear_1.weight"].T + p["linear_1.bias"]


def test_fast_calls_give_the_checked_results_and_offer_no_shortcut_for_bad_input(setup):
    be, pm, params, x = setup
    first = pm.evaluate(params, {"input": x})["output"]  # checked path; arms the fast path
    assert pm._fast is not None
    for _ in range(3):
        again = pm.evaluate(params, {"input": x})["output"]
        np.testing.assert_allclose(np.asarray(again), np.asarray(first), rtol=0, atol=0)
    np.testing.assert_allclose(np.asarray(first), _reference(params, x), rtol=1e-5, atol=1e-5)

    with pytest.raises(EvaluationError, match=r"expected a jax.Array"):
        pm.evaluate(params, {"input": np.asarray(x)})  # NumPy in: rejected as on the checked path
    with pytest.raises(MithrilError, match=r"linear_0.weight"):
        pm.evaluate({**params, "linear_0.weight": be.randn(8, 6)}, {"input": x})  # wrong shape
    with pytest.raises(MithrilError):
        pm.evaluate({k: v for k, v in params.items() if k != "linear_1.bias"}, {"input": x})  # missing key
    with pytest.raises(MithrilError):
        pm.evaluate(params, {"input": be.array(np.ones((4, 5), np.int32))})  # int where float is needed


def test_a_new_shape_set_goes_through_the_checked_path_and_compiles(setup):
    be, pm, params, x = setup
    pm.evaluate(params, {"input": x})
    pm.evaluate(params, {"input": x})
    x7 = be.randn(7, 5)
    out = pm.evaluate(params, {"input": x7})["output"]
    assert out.shape == (7, 3)
    np.testing.assert_allclose(np.asarray(out), _reference(params, x7), rtol=1e-5, atol=1e-5)
    out4 = pm.evaluate(params, {"input": x})["output"]
    np.testing.assert_allclose(np.asarray(out4), _reference(params, x), rtol=1e-5, atol=1e-5)


def test_gradients_through_the_fast_path_match_the_checked_ones(setup):
    be, pm, params, x = setup
    g = {"output": be.randn(4, 3)}
    _out1, grads1 = pm.evaluate(params, {"input": x}, g)
    _out2, grads2 = pm.evaluate(params, {"input": x}, g)  # fast
    assert pm._fast is not None and pm._fast[0][1] == ("output",)
    for k in grads1:
        np.testing.assert_array_equal(np.asarray(grads1[k]), np.asarray(grads2[k]))
    # mode switches and return_state take their own entries
    outputs, state = pm.evaluate(params, {"input": x}, training=False, return_state=True)
    assert state == {} and outputs["output"].shape == (4, 3)
