"""A backend with forward kernels only differentiates convolutions, pooling and slicing.

``ForwardOnlyBackend`` is NumPy without the kernels of the five gradient primitives
(``conv2d_input_grad``, ``conv2d_weight_grad``, ``max_pool2d_grad``, ``avg_pool2d_grad``,
``slice_grad``): the core's default rules (:mod:`mithril.primitives.default_rules`) expand
them into forward primitives. The conformance suite runs against it for every case of those
primitives, of the forward primitives whose gradients emit them, and of every block that uses
them, forward and gradient, in float32 and float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import mithril as ml
from mithril.primitives import COMPOSITE_PRIMITIVES, CORE_PRIMITIVES
from mithril.primitives.default_rules import DEFAULT_RULES
from mithril.testing.cases import BLOCK_CASES
from mithril.testing.conformance import *  # noqa: F403  (the suite: pytest collects its tests by name)
from mithril.testing.conformance import _block_primitives

mithril_numpy = pytest.importorskip("mithril_numpy")

GRADIENT_PRIMITIVES = frozenset(DEFAULT_RULES)
#: forward primitives whose gradient rules emit the gradient primitives
EMITTERS = frozenset({"conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "slice", "concat"})


class ForwardOnlyBackend(mithril_numpy.NumpyBackend):
    """NumPy with forward kernels only."""

    name = "forward-only-numpy"
    distribution = "tests"

    def core_kernels(self) -> dict[str, Any]:
        return {k: v for k, v in super().core_kernels().items() if k not in GRADIENT_PRIMITIVES}


def _blocks() -> set[str]:
    uses = GRADIENT_PRIMITIVES | EMITTERS
    return {c.id for c in BLOCK_CASES if _block_primitives(c.build()) & uses}


@pytest.fixture(
    params=[
        pytest.param(
            {"only": set(GRADIENT_PRIMITIVES | EMITTERS) | _blocks(), "tests": {"forward", "gradient", "kernels"}},
            id="forward-only",
        )
    ]
)
def mithril_conformance_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.param


@pytest.fixture
def mithril_backend_factory() -> Any:
    return lambda dtype: ForwardOnlyBackend(dtype=dtype)


def test_the_gradient_primitives_are_composites_not_core_kernels() -> None:
    assert {
        "conv2d_input_grad",
        "conv2d_weight_grad",
        "max_pool2d_grad",
        "avg_pool2d_grad",
        "slice_grad",
    } == GRADIENT_PRIMITIVES
    assert not GRADIENT_PRIMITIVES & set(CORE_PRIMITIVES)
    assert set(COMPOSITE_PRIMITIVES) >= GRADIENT_PRIMITIVES
    assert not GRADIENT_PRIMITIVES & set(ForwardOnlyBackend().kernels)


def _cnn() -> Any:
    from mithril.models import AvgPool2d, Conv2d, MaxPool2d, Model

    m = Model()
    m |= Conv2d(3, 4, kernel_size=3, padding=1, stride=2, name="conv")
    m += MaxPool2d(3, stride=2, padding=1)
    m += Conv2d(4, 4, kernel_size=2, groups=2, dilation=2, name="grouped")
    m += AvgPool2d(2, padding=1, count_include_pad=False)
    return m


def test_generated_code_calls_forward_kernels_only_and_agrees_with_numpy() -> None:
    model = _cnn()
    fwd, ref = ForwardOnlyBackend(dtype=ml.float64), ml.NumpyBackend(dtype=ml.float64)
    shapes = {"input": [2, 3, 15, 13]}
    pm, pm_ref = ml.compile(model, fwd, shapes=shapes), ml.compile(model, ref, shapes=shapes)
    params = pm.randomize_params(seed=0)
    x = np.random.default_rng(0).standard_normal((2, 3, 15, 13))
    cot = np.random.default_rng(1).standard_normal(pm.shapes["output"])
    out, grads = pm.evaluate(params, {"input": x}, {"output": cot})
    out_ref, grads_ref = pm_ref.evaluate(params, {"input": x}, {"output": cot})
    for name in GRADIENT_PRIMITIVES:
        assert f"k_{name}(" not in pm.source
    assert "k_conv2d_input_grad(" in pm_ref.source  # NumPy keeps its own kernels
    np.testing.assert_allclose(out["output"], out_ref["output"], rtol=1e-12, atol=1e-12)
    assert set(grads) == set(grads_ref) == set(params)
    for k in grads:
        np.testing.assert_allclose(grads[k], grads_ref[k], rtol=1e-10, atol=1e-12, err_msg=k)


def test_max_pool_default_rule_routes_ties_to_the_first_max_and_nan_to_the_last_nan() -> None:
    from mithril.models import IOKey, Model, primitive_block

    m = Model()
    m |= primitive_block("max_pool2d_grad", kernel_size=(2, 2), stride=(1, 1))(
        input=IOKey("x"), grad=IOKey("g"), output=IOKey("output")
    )
    x = np.array([[[[1.0, 1.0, 0.0], [1.0, np.nan, 2.0], [np.nan, 3.0, np.nan]]]])
    g = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    shapes = {"x": [1, 1, 3, 3], "g": [1, 1, 2, 2]}
    got = ml.compile(m, ForwardOnlyBackend(dtype=ml.float64), shapes=shapes).evaluate({}, {"x": x, "g": g})
    want = ml.compile(m, ml.NumpyBackend(dtype=ml.float64), shapes=shapes).evaluate({}, {"x": x, "g": g})
    np.testing.assert_array_equal(got["output"], want["output"])
