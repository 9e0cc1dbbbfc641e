"""Rematerialisation (mithril.ir.passes.remat) and the fused convolution gradient (fuse.fuse_conv_backward).

Both passes only rearrange the graph, so NumPy runs both forms and the plain
compile is the oracle: the same gradients, to float64 rounding. ``FusingNumpy``
is NumPy that claims a fusing JIT (the pass runs under ``jit=True``);
``ConvBackwardNumpy`` adds a ``conv2d_backward`` kernel built from NumPy's own
convolution gradient kernels, so the fusion pass runs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

import mithril as ml
from mithril.ir.graph import Graph, Value
from mithril.models import BatchNorm2d, Conv2d, Dropout, Flatten, IOKey, LayerNorm, Linear, Model, Relu, primitive_block
from mithril.physical.pipeline import _forward_prefix


class FusingNumpy(ml.NumpyBackend):
    """NumPy claiming a JIT that fuses element-wise chains: ``jit=True`` runs the rematerialisation."""

    supports_jit: ClassVar[bool] = True
    jit_fuses_elementwise: ClassVar[bool] = True

    def jit(self, fn: Any, *, what: str) -> Any:
        return fn  # the pass is what is tested, not a compiler

    def core_kernels(self) -> dict[str, Any]:
        def normalize_affine(
            x: np.ndarray, w: np.ndarray, b: np.ndarray, *, axes: tuple[int, ...], eps: float
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            mean = x.mean(axis=axes, keepdims=True)
            rstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=axes, keepdims=True) + eps)
            return (x - mean) * rstd * w + b, mean, rstd

        def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
            return x @ w.T + b

        return {**super().core_kernels(), "normalize_affine": normalize_affine, "linear": linear}


class ConvBackwardNumpy(ml.NumpyBackend):
    """NumPy with a ``conv2d_backward`` kernel; records the ``wanted`` of each call."""

    CALLS: ClassVar[list[tuple[str, ...]]] = []

    def core_kernels(self) -> dict[str, Any]:
        table = dict(super().core_kernels())

        def conv2d_backward(
            x: np.ndarray, w: np.ndarray, g: np.ndarray, *, wanted: tuple[str, ...], **conv: Any
        ) -> tuple[Any, Any, Any]:
            ConvBackwardNumpy.CALLS.append(wanted)
            gi = table["conv2d_input_grad"](g, w, input_shape=x.shape, **conv) if "input" in wanted else None
            gw = table["conv2d_weight_grad"](x, g, weight_shape=w.shape, **conv) if "weight" in wanted else None
            gb = g.sum(axis=(0, 2, 3)) if "bias" in wanted else None
            return gi, gw, gb

        table["conv2d_backward"] = conv2d_backward
        return table


def conv_bn_relu(tail: str) -> Model:
    """conv -> BatchNorm -> ReLU, then ``tail``: 'square' (element-wise), 'conv' (a second convolution) or
    'linear' (flatten, a view, then a linear layer)."""
    m = Model()
    m |= Conv2d(in_channels=2, out_channels=3, kernel_size=3, padding=1)(input="input", output="conv")
    m += BatchNorm2d(num_features=3)(input="conv", output="bn")
    m += Relu()(input="bn", output="act")
    if tail == "square":
        m |= primitive_block("mul")(left="act", right="act", output=IOKey("output"))
    elif tail == "conv":
        m += Conv2d(in_channels=3, out_channels=2, kernel_size=3, stride=2)(input="act", output=IOKey("output"))
    else:
        m += Flatten()(input="act", output="flat")
        m += Linear(dimension=2)(input="flat", output=IOKey("output"))
    return m


def train_step(model: Model, backend: ml.Backend, jit: bool, seed: int = 0) -> tuple[Any, Any, Any]:
    pm = ml.compile(model, backend, shapes={"input": [2, 2, 6, 6]}, jit=jit)
    params = pm.randomize_params(seed=seed)
    rng = np.random.default_rng(seed)
    x = backend.array(rng.standard_normal((2, 2, 6, 6)))
    out = pm.evaluate(params, {"input": x})
    cot = {k: backend.array(rng.standard_normal(np.shape(v))) for k, v in out.items()}
    backend.seed(seed)
    out, grads = pm.evaluate(params, {"input": x}, cot)
    return pm, out, grads


def read_by_backward(graph: Graph) -> set[int]:
    return {v.uid for n in graph.nodes[_forward_prefix(graph) :] for v in n.inputs}


def relu_output(graph: Graph) -> Value:
    (node,) = [n for n in graph.nodes if n.primitive.name == "relu" and "(recomputed)" not in n.where]
    return node.output


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-10, atol=1e-12, err_msg=k)


# ------------------------------------------------------------------ rematerialisation
def test_the_backward_pass_recomputes_batchnorm_relu_instead_of_keeping_it() -> None:
    model = conv_bn_relu("square")
    pm, out, grads = train_step(model, FusingNumpy(dtype=ml.float64), jit=True)
    _, ref_out, ref_grads = train_step(model, ml.NumpyBackend(dtype=ml.float64), jit=False)
    assert_same(out, ref_out)
    assert_same(grads, ref_grads)
    graph = pm._last.graph  # type: ignore[union-attr]
    assert relu_output(graph).uid not in read_by_backward(graph)
    recomputed = [n.primitive.name for n in graph.nodes if "(recomputed)" in n.where]
    assert "relu" in recomputed and "normalize_affine" not in recomputed
    assert pm.source.count("k_normalize_affine(") == 1  # its output is rebuilt from the saved mean and rstd
    conv_out = next(n for n in graph.nodes if n.primitive.name == "normalize_affine").inputs[0]
    assert conv_out.uid in read_by_backward(graph)  # what BatchNorm's gradient keeps anyway


def test_only_a_fusing_jit_rematerialises() -> None:
    model = conv_bn_relu("square")
    for backend, jit in ((FusingNumpy(dtype=ml.float64), False), (ml.NumpyBackend(dtype=ml.float64), False)):
        pm, _, _ = train_step(model, backend, jit=jit)
        graph = pm._last.graph  # type: ignore[union-attr]
        assert relu_output(graph).uid in read_by_backward(graph)
        assert not any("(recomputed)" in n.where for n in graph.nodes)


@pytest.mark.parametrize("tail", ["conv", "linear"])
def test_a_value_read_by_a_weight_gradient_is_kept(tail: str) -> None:
    """Recomputing the input of a weight gradient, or of a view of it, would write it again: it stays kept."""
    model = conv_bn_relu(tail)
    pm, _out, grads = train_step(model, FusingNumpy(dtype=ml.float64), jit=True)
    _, _ref_out, ref_grads = train_step(model, ml.NumpyBackend(dtype=ml.float64), jit=False)
    assert_same(grads, ref_grads)
    graph = pm._last.graph  # type: ignore[union-attr]
    assert relu_output(graph).uid in read_by_backward(graph)


def test_a_value_a_matrix_product_reads_through_a_backward_view_is_kept() -> None:
    """[B, T, D] -> LayerNorm -> Linear: the weight gradient reads the normalised values through a
    reshape emitted by the gradient rule; recomputing them would write them again for the product."""
    m = Model()
    m |= LayerNorm(4)(input="input", output="ln")
    m += Linear(dimension=3)(input="ln", output=IOKey("output"))
    pm = ml.compile(m, FusingNumpy(dtype=ml.float64), shapes={"input": [2, 5, 4]}, jit=True)
    params = pm.randomize_params(seed=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 4))
    pm.evaluate(params, {"input": x}, {"output": np.ones((2, 5, 3))})
    assert not any("(recomputed)" in n.where for n in pm._last.graph.nodes)  # type: ignore[union-attr]


def test_random_draws_are_kept_and_everything_after_them_agrees() -> None:
    m = Model()
    m |= Conv2d(in_channels=2, out_channels=3, kernel_size=3, padding=1)(input="input", output="conv")
    m += BatchNorm2d(num_features=3)(input="conv", output="bn")
    m += Dropout(p=0.5)(input="bn", output="d")
    m |= primitive_block("mul")(left="d", right="d", output=IOKey("output"))
    pm, out, grads = train_step(m, FusingNumpy(dtype=ml.float64), jit=True)
    _, ref_out, ref_grads = train_step(m, ml.NumpyBackend(dtype=ml.float64), jit=False)
    assert_same(out, ref_out)
    assert_same(grads, ref_grads)
    graph = pm._last.graph  # type: ignore[union-attr]
    assert sum(n.primitive.random for n in graph.nodes) == 1  # one draw, never recomputed
    assert any("(recomputed)" in n.where for n in graph.nodes)  # the dropped-out values are


# ------------------------------------------------------------------ one call for a convolution's gradients
@pytest.mark.parametrize(
    "tail,wanted", [("square", [("weight", "bias")]), ("conv", [("input", "weight", "bias"), ("weight", "bias")])]
)
def test_a_convolutions_gradients_share_one_call(tail: str, wanted: list[tuple[str, ...]]) -> None:
    model = conv_bn_relu(tail)
    ConvBackwardNumpy.CALLS.clear()
    pm, out, grads = train_step(model, ConvBackwardNumpy(dtype=ml.float64), jit=False)
    _, ref_out, ref_grads = train_step(model, ml.NumpyBackend(dtype=ml.float64), jit=False)
    assert_same(out, ref_out)
    assert_same(grads, ref_grads)
    assert sorted(ConvBackwardNumpy.CALLS) == sorted(wanted)
    assert "k_conv2d_weight_grad(" not in pm.source and "k_conv2d_input_grad(" not in pm.source


def test_conv2d_backward_rejects_results_it_does_not_have() -> None:
    from mithril.errors import ModelBuildError
    from mithril.primitives.base import registry

    prim = registry.get("conv2d_backward")
    with pytest.raises(ModelBuildError, match="wanted"):
        prim.bind_attrs({"wanted": ("weight", "offset"), "result": "weight"})
    with pytest.raises(ModelBuildError, match="wanted"):
        prim.bind_attrs({"wanted": ("input",), "result": "weight"})
    assert prim.bind_attrs({"wanted": ("bias", "weight"), "result": "bias"})["wanted"] == ("weight", "bias")
