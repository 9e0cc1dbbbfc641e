"""mithril.testing.check_primitive: a custom primitive's gradient rule and kernels, checked in one call."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import mithril as ml
from mithril import Primitive
from mithril.plugins import hookimpl
from mithril.shapes.kinds import bind_kind, unify_kinds
from mithril.shapes.symbolic import unify
from mithril.testing import check_gradient, check_primitive

pytest.importorskip("mithril_numpy")
HAS_TORCH = importlib.util.find_spec("mithril_torch") is not None and importlib.util.find_spec("torch") is not None


def _rule(ins, out, attrs):
    bind_kind(ins[0].kind, "float")
    unify_kinds(ins[0].kind, out.kind)
    unify(ins[0].shape, out.shape)
    return True


def _softplus_vjp(scale):
    def vjp(b, node, g):  # d/dx log(1 + exp(beta x)) / beta = sigmoid(beta x)
        s = b.emit("sigmoid", b.emit("mul", b.const(node.attrs["beta"]), node.inputs[0]))
        return [b.emit("mul", g, b.emit("mul", b.const(scale), s))]

    return vjp


def _plugin(name, scale=1.0, torch_offset=0.0):
    class Plugin:
        @hookimpl
        def mithril_register_primitives(self, register):
            register(Primitive(name, ("input",), _rule, attrs={"beta": 1.0}, vjp=_softplus_vjp(scale)))

        @hookimpl
        def mithril_register_kernels(self, backend_name, register):
            if backend_name == "numpy":
                register(name, lambda x, *, beta: np.logaddexp(0.0, beta * x) / beta)
            elif backend_name == "torch":
                import torch

                register(name, lambda x, *, beta: torch.nn.functional.softplus(x, beta=beta) + torch_offset)

    return Plugin()


@pytest.fixture
def register():
    names = []

    def reg(name, **kw):
        ml.plugins.register(_plugin(name, **kw), name=name)
        names.append(name)

    yield reg
    for n in names:
        ml.plugins.unregister(n)


def test_a_correct_primitive_passes_on_every_backend_asked(register):
    register("softplus_ok")
    backends = ["numpy", "torch"] if HAS_TORCH else ["numpy"]
    report = check_primitive(
        "softplus_ok",
        shapes=[(4, 3)],
        attrs={"beta": 2.0},
        backends=backends,
        reference=lambda x, *, beta: np.logaddexp(0.0, beta * x) / beta,
    )
    assert report.ok and [r.backend for r in report.results] == backends
    assert all(r.gradients["input"] < 1e-8 for r in report.results)
    assert "ok" in str(report)


def test_a_wrong_gradient_rule_fails_against_finite_differences(register):
    register("softplus_badgrad", scale=1.5)
    with pytest.raises(AssertionError, match=r"softplus_badgrad.*\n.*\nnumpy .*FAILED"):
        check_gradient("softplus_badgrad", shapes=[(3, 2)])
    report = check_gradient("softplus_badgrad", shapes=[(3, 2)], raise_on_failure=False)
    assert not report.ok and report.results[0].gradients["input"] > 0.1


@pytest.mark.skipif(not HAS_TORCH, reason="needs mithril-torch")
def test_a_backend_whose_kernel_disagrees_is_named(register):
    register("softplus_torch_off", torch_offset=1e-3)
    report = check_primitive("softplus_torch_off", shapes=[(5,)], backends=["numpy", "torch"], raise_on_failure=False)
    verdict = {r.backend: r.ok for r in report.results}
    assert verdict == {"numpy": True, "torch": False}, str(report)


def test_a_backend_without_a_kernel_is_skipped_but_not_all(register):
    register("softplus_numpy_only")
    from mithril_numpy import NumpyBackend

    class Other(NumpyBackend):
        name = "other-numpy"

    report = check_primitive("softplus_numpy_only", shapes=[(2, 2)], backends=["numpy", Other(dtype=ml.float64)])
    notes = {r.backend: r.note for r in report.results}
    assert notes["numpy"] == "" and notes["other-numpy"].startswith("skipped") and report.ok
    with pytest.raises(AssertionError, match="no backend could run"):
        check_primitive("softplus_numpy_only", shapes=[(2, 2)], backends=[Other(dtype=ml.float64)])


def test_core_primitives_with_several_inputs_and_attributes():
    assert check_primitive(
        "conv2d", shapes=[(1, 2, 5, 5), (3, 2, 3, 3)], attrs={"stride": 2, "padding": 1}, backends=["numpy"]
    ).ok
    assert check_primitive("where", shapes=[(3,), (3,), (3,)], kinds=["bool", "float", "float"], backends=["numpy"]).ok
