"""Tests of the conformance suite itself (mithril.testing): coverage, the reference, the mechanics.

* every core primitive has a reference and cases; gradient helpers of the reference
  agree with finite differences of its forward functions;
* the reference agrees with torch.nn.functional where torch is installed (an
  oracle that shares no code with it or with any Mithril backend);
* run through ``pytester``, the suite catches a broken kernel, skips declared
  unsupported primitives and forward-only gradients, and deselects by configuration.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from mithril.primitives import CORE_PRIMITIVES, registry
from mithril.testing import cases as C
from mithril.testing import reference as R
from mithril.testing.conformance import numerical_vjp

pytest_plugins = ["pytester"]


# ------------------------------------------------------------------ coverage
def test_every_core_primitive_has_a_reference_and_cases() -> None:
    covered = Counter(c.primitive for c in C.PRIMITIVE_CASES)
    for name in CORE_PRIMITIVES:
        assert name in R.REFERENCE, name
        assert covered[name] >= 1, name
        if registry.get(name).differentiable and name not in ("cast",):
            assert any(c.gradient for c in C.cases_for(name)), f"{name} has no gradient case"


def test_case_ids_are_unique_and_inputs_reproducible() -> None:
    ids = [c.id for c in C.PRIMITIVE_CASES] + [c.id for c in C.BLOCK_CASES]
    assert len(ids) == len(set(ids))
    for c in C.PRIMITIVE_CASES[:20]:
        a, b = c.inputs(), c.inputs()
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_case_inputs_match_their_declared_shapes_and_kinds() -> None:
    kinds = {"float": "f", "int": "i", "bool": "b"}
    for c in C.PRIMITIVE_CASES:
        for arg, value in zip(c.args, c.inputs()):
            assert value.shape == arg.shape, c.id
            assert value.dtype.kind == kinds[arg.kind], c.id
        c.reference(c.inputs())  # every case runs through the reference


def test_selection_cases_have_no_ties() -> None:
    for c in C.PRIMITIVE_CASES:
        if c.primitive in ("max", "min", "argmax", "max_pool2d", "maximum", "minimum") and c.gradient:
            vals = np.concatenate([v.ravel() for v in c.inputs()])
            assert len(np.unique(vals)) == vals.size, c.id


def test_kink_cases_stay_away_from_the_kink() -> None:
    for c in C.PRIMITIVE_CASES:
        if c.primitive in ("relu", "abs", "leaky_relu") and c.gradient:
            assert np.min(np.abs(c.inputs()[0])) > 1e-3, c.id


# ----------------------------------------------- reference: internal agreement
def _vjp_of(fn, values, i, cot):  # type: ignore[no-untyped-def]
    return numerical_vjp(lambda vs: fn(*vs), values, [i], cot)[0]


@pytest.mark.parametrize("case", C.cases_for("conv2d"), ids=lambda c: c.id)
def test_reference_conv_grads_are_the_vjps_of_conv(case: C.PrimitiveCase) -> None:
    x, w = case.inputs()
    y = R.conv2d(x, w, **case.attrs)
    g = np.random.default_rng(0).standard_normal(y.shape)

    def fwd(x_, w_):
        return R.conv2d(x_, w_, **case.attrs)

    np.testing.assert_allclose(
        R.conv2d_input_grad(g, w, input_shape=x.shape, **case.attrs), _vjp_of(fwd, [x, w], 0, g), rtol=1e-6, atol=1e-8
    )
    np.testing.assert_allclose(
        R.conv2d_weight_grad(x, g, weight_shape=w.shape, **case.attrs), _vjp_of(fwd, [x, w], 1, g), rtol=1e-6, atol=1e-8
    )


@pytest.mark.parametrize("case", C.cases_for("max_pool2d") + C.cases_for("avg_pool2d"), ids=lambda c: c.id)
def test_reference_pool_grads_are_the_vjps_of_pools(case: C.PrimitiveCase) -> None:
    (x,) = case.inputs()
    fwd = R.reference(case.primitive)
    y = fwd(x, **case.attrs)
    g = np.random.default_rng(0).standard_normal(y.shape)
    want = _vjp_of(lambda x_: fwd(x_, **case.attrs), [x], 0, g)
    if case.primitive == "max_pool2d":
        got = R.max_pool2d_grad(x, g, **case.attrs)
    else:
        got = R.avg_pool2d_grad(g, input_shape=x.shape, **case.attrs)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", [c for c in C.cases_for("slice") if c.gradient], ids=lambda c: c.id)
def test_reference_slice_grad_is_the_vjp_of_slice(case: C.PrimitiveCase) -> None:
    (x,) = case.inputs()
    y = R.slice_(x, **case.attrs)
    g = np.random.default_rng(0).standard_normal(y.shape)
    want = _vjp_of(lambda x_: R.slice_(x_, **case.attrs), [x], 0, g)
    np.testing.assert_allclose(R.slice_grad(g, input_shape=x.shape, **case.attrs), want, atol=1e-8)


def test_reference_argmax_takes_the_first_maximum() -> None:
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    np.testing.assert_array_equal(R.argmax(x, axis=(-1,)), [1, 0])
    np.testing.assert_array_equal(R.argmax(x, axis=(0,), keepdims=True), [[1, 0, 0]])


def test_reference_cast_truncates_toward_zero() -> None:
    np.testing.assert_array_equal(R.cast(np.array([-1.7, -0.2, 0.0, 0.6, 2.9]), kind="int"), [-1, 0, 0, 0, 2])
    np.testing.assert_array_equal(R.cast(np.array([-0.5, 0.0, 2.0]), kind="bool"), [True, False, True])


def test_reference_erf_and_gelu() -> None:
    x = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(R.erf(x), [math.erf(v) for v in x], rtol=0, atol=0)
    assert R.gelu(np.array([0.0]))[0] == 0.0
    np.testing.assert_allclose(R.gelu(np.array([10.0])), [10.0])


# ------------------------------------------------- reference: torch as oracle
def _torch():  # type: ignore[no-untyped-def]
    return pytest.importorskip("torch")


@pytest.mark.parametrize("case", C.cases_for("conv2d"), ids=lambda c: c.id)
def test_reference_conv2d_matches_torch(case: C.PrimitiveCase) -> None:
    t = _torch()
    x, w = case.inputs()
    want = t.nn.functional.conv2d(t.tensor(x), t.tensor(w), **case.attrs).numpy()
    np.testing.assert_allclose(R.conv2d(x, w, **case.attrs), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", C.cases_for("max_pool2d") + C.cases_for("avg_pool2d"), ids=lambda c: c.id)
def test_reference_pools_match_torch(case: C.PrimitiveCase) -> None:
    t = _torch()
    (x,) = case.inputs()
    fn = getattr(t.nn.functional, case.primitive)
    want = fn(t.tensor(x), **case.attrs).numpy()
    np.testing.assert_allclose(R.reference(case.primitive)(x, **case.attrs), want, rtol=1e-12, atol=1e-12)


def test_reference_max_pool_grad_matches_torch_on_ties() -> None:
    t = _torch()
    x = np.random.default_rng(3).integers(0, 3, (2, 2, 6, 7)).astype(np.float64)
    attrs = {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1, 1), "dilation": (1, 1)}
    xt = t.tensor(x, requires_grad=True)
    y = t.nn.functional.max_pool2d(xt, **attrs)
    g = np.random.default_rng(4).standard_normal(tuple(y.shape))
    y.backward(t.tensor(g))
    np.testing.assert_allclose(R.max_pool2d_grad(x, g, **attrs), xt.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_reference_elementwise_matches_torch(approximate: str) -> None:
    t = _torch()
    x = np.linspace(-4, 4, 41)
    tx = t.tensor(x)
    np.testing.assert_allclose(
        R.gelu(x, approximate=approximate),
        t.nn.functional.gelu(tx, approximate=approximate).numpy(),
        rtol=1e-12,
        atol=1e-14,
    )
    np.testing.assert_allclose(R.erf(x), t.erf(tx).numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(R.sigmoid(x), t.sigmoid(tx).numpy(), rtol=1e-12)
    np.testing.assert_allclose(R.leaky_relu(x, slope=0.2), t.nn.functional.leaky_relu(tx, 0.2).numpy())
    np.testing.assert_allclose(
        R.log_softmax(x[:39].reshape(3, 13), axis=0), t.log_softmax(tx[:39].reshape(3, 13), 0).numpy(), rtol=1e-12
    )


def test_block_references_match_torch_nn() -> None:
    t = _torch()
    p, i = C.block_case("cnn").values()
    x = t.tensor(i["input"])
    conv = t.nn.Conv2d(2, 3, 3, padding=1).double()
    bn = t.nn.BatchNorm2d(3).double()
    fc = t.nn.Linear(12, 4).double()
    with t.no_grad():
        conv.weight.copy_(t.tensor(p["conv.weight"]))
        conv.bias.copy_(t.tensor(p["conv.bias"]))
        bn.weight.copy_(t.tensor(p["bn.weight"]))
        bn.bias.copy_(t.tensor(p["bn.bias"]))
        bn.running_mean.copy_(t.tensor(p["bn.running_mean"]))
        bn.running_var.copy_(t.tensor(p["bn.running_var"]))
        fc.weight.copy_(t.tensor(p["fc.weight"]))
        fc.bias.copy_(t.tensor(p["fc.bias"]))
    net = t.nn.Sequential(conv, bn, t.nn.ReLU(), t.nn.MaxPool2d(2), t.nn.Flatten(), fc)
    for training in (True, False):
        net.train(training)
        with t.no_grad():
            before = (bn.running_mean.clone(), bn.running_var.clone())
            want = net(x).numpy()
        out, state = C.block_case("cnn").reference(p, i, training)
        np.testing.assert_allclose(out["output"], want, rtol=1e-10, atol=1e-12)
        if training:
            np.testing.assert_allclose(state["bn.running_mean"], bn.running_mean.numpy(), rtol=1e-12)
            np.testing.assert_allclose(state["bn.running_var"], bn.running_var.numpy(), rtol=1e-12)
            with t.no_grad():  # back to the values the reference started from
                bn.running_mean.copy_(before[0])
                bn.running_var.copy_(before[1])


# ------------------------------------------------------- the suite, run whole
_BACKEND_TEST = """
import numpy as np
import pytest
from mithril.testing.conformance import *  # noqa
from mithril_numpy import NumpyBackend

class Patched(NumpyBackend):
    PATCH = {PATCH}

    def core_kernels(self):
        table = dict(super().core_kernels())
        for name, fn in self.PATCH.items():
            table[name] = fn
        return table

@pytest.fixture
def mithril_backend_factory():
    return lambda dtype: Patched(dtype=dtype)

@pytest.fixture(params=[{OPTIONS}], ids=["config"])
def mithril_conformance_options(request):
    return request.param
"""


def _run(pytester: pytest.Pytester, patch: str, options: str, *args: str) -> pytest.RunResult:
    pytest.importorskip("mithril_numpy")
    pytester.makepyfile(test_suite=_BACKEND_TEST.replace("{PATCH}", patch).replace("{OPTIONS}", options))
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q", *args)


def test_suite_passes_a_correct_backend_and_deselects_by_configuration(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "{}", '{"only": {"softmax", "block-linear"}}')
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()[-3000:]
    assert outcomes["passed"] >= 12 and outcomes["deselected"] > 100


def test_suite_catches_a_wrong_forward_kernel(pytester: pytest.Pytester) -> None:
    # softmax over the first axis, whatever the attribute says
    patch = '{"softmax": lambda x, axis=-1: np.exp(x) / np.exp(x).sum(axis=0, keepdims=True)}'
    result = _run(pytester, patch, '{"only": {"softmax"}, "tests": {"forward"}}')
    result.assert_outcomes(failed=6, deselected=result.parseoutcomes()["deselected"])  # every softmax case, both dtypes


def test_suite_catches_a_wrong_gradient_helper(pytester: pytest.Pytester) -> None:
    # a transpose of slice that drops the gradient: invisible forward, visible in gradients
    patch = '{"slice_grad": lambda g, input_shape, starts, stops, steps: np.zeros(input_shape, g.dtype)}'
    result = _run(pytester, patch, '{"only": {"slice"}, "dtypes": ("float64",)}')
    # forward passes (8 cases), the empty slice's zero gradient too, the kernel table is complete;
    # the gradients of the 6 non-empty float slices fail
    result.assert_outcomes(passed=10, failed=6)


def test_suite_skips_unsupported_and_forward_only(pytester: pytest.Pytester) -> None:
    opts = '{"only": {"softmax", "exp-matrix"}, "unsupported": {"softmax": "not in this backend"}, "gradients": False}'
    result = _run(pytester, "{}", opts, "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0
    assert outcomes["passed"] == 3  # exp forward in two dtypes, and the kernel table
    result.stdout.fnmatch_lines(["*softmax: not in this backend*", "*forward-only backend*"])


def test_suite_explains_a_missing_factory(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_missing="from mithril.testing.conformance import *  # noqa\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q", "-k", "exp-matrix and float64 and forward")
    result.stdout.fnmatch_lines(["*needs a fixture named 'mithril_backend_factory'*"])
