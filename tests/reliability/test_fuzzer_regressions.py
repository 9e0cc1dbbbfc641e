"""Regression tests for the bugs the fuzzer found (issue 19, "Bugs the fuzzer found").

Each test reproduces one report and checks the fixed behaviour, on every installed backend
where it applies (:mod:`mithril.testing.variants`).
"""

from __future__ import annotations

import numpy as np
import pytest

import mithril as ml
from mithril.errors import ModelBuildError, ShapeMismatchError
from mithril.models import (
    LSTM,
    MLP,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Concat,
    Conv1d,
    Conv2d,
    ConvTranspose2d,
    Embedding,
    GroupNorm,
    IOKey,
    LayerNorm,
    Linear,
    MatrixMultiply,
    MaxPool1d,
    MaxPool2d,
    Model,
    MultiHeadAttention,
    Relu,
    RMSNorm,
    Transpose,
)
from mithril.models.connections import uniform_fan_in
from mithril.models.primitive_blocks import PrimitiveBlock
from mithril.testing.variants import variant_backend, variants

VARIANTS = variants()


# ---------------------------------------------------------------- 1. torch.autograd, unreached outputs
def _unreached_model() -> Model:
    """``out1`` depends on the Linear's params, ``out2`` on no param at all."""
    model = Model()
    model |= Linear(dimension=3)(input="input", output=IOKey("out1"))
    model |= Relu()(input="x", output=IOKey("out2"))
    return model


def _paramless_model() -> Model:
    model = Model()
    model |= Relu()(input="x", output=IOKey("out2"))
    return model


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("case", ["both_outputs", "only_unreached", "no_params"])
def test_torch_autograd_unreached_output_gives_zero_gradients(case, jit):
    pytest.importorskip("mithril_torch")
    model = _paramless_model() if case == "no_params" else _unreached_model()
    shapes = {"x": [2, 3]} if case == "no_params" else {"input": [2, 4], "x": [2, 3]}
    cot_keys = ["out2"] if case != "both_outputs" else ["out1", "out2"]
    rng = np.random.default_rng(0)
    data = {k: rng.standard_normal(s) for k, s in shapes.items()}
    cots = {k: rng.standard_normal((2, 3)) for k in cot_keys}
    results = {}
    for autodiff in ("mithril", "torch"):
        backend = ml.TorchBackend(dtype=ml.float64, autodiff=autodiff)
        pm = ml.compile(model, backend, shapes=shapes, jit=jit)
        params = pm.randomize_params(seed=0)
        inputs = {k: backend.array(v) for k, v in data.items()}
        _, grads = pm.evaluate(params, inputs, {k: backend.array(v) for k, v in cots.items()})
        results[autodiff] = {k: np.asarray(v) for k, v in grads.items()}
    assert results["torch"].keys() == results["mithril"].keys()
    for k, v in results["mithril"].items():
        np.testing.assert_allclose(results["torch"][k], v, rtol=1e-12, atol=1e-12)
    if case == "only_unreached":
        assert all(not v.any() for v in results["torch"].values())


# ---------------------------------------------------------------- 2. GGML: a param as matmul's left operand
def _param_left_matmul(w_shape: list[int]) -> Model:
    model = Model()
    model |= MatrixMultiply()(
        left=IOKey("w", shape=w_shape, role="param", init=uniform_fan_in), right="input", output=IOKey("output")
    )
    return model


@pytest.mark.parametrize("quantize", [None, "int8"])
@pytest.mark.parametrize(("w_shape", "x_shape"), [([3, 32], [32, 5]), ([2, 3, 32], [2, 32, 5]), ([3, 32], [2, 32, 5])])
def test_ggml_param_as_left_matmul_operand(w_shape, x_shape, quantize):
    pytest.importorskip("mithril_ggml")
    pytest.importorskip("mithril_numpy")
    model = _param_left_matmul(w_shape)
    ref = ml.NumpyBackend(dtype=ml.float32)
    pr = ml.compile(model, ref, shapes={"input": x_shape})
    params = pr.randomize_params(seed=0)
    x = ref.randn(*x_shape)
    expected = np.asarray(pr.evaluate(params, {"input": x})["output"])
    cot = np.random.default_rng(1).standard_normal(expected.shape).astype(np.float32)
    _, ref_grads = pr.evaluate(params, {"input": x}, {"output": ref.array(cot)})

    backend = ml.GGMLBackend(dtype=ml.float32, quantize=quantize)
    pm = ml.compile(model, backend, shapes={"input": x_shape})
    gparams = {k: backend.array(np.asarray(v)) for k, v in params.items()}
    gx = backend.array(np.asarray(x))
    got = np.asarray(pm.evaluate(gparams, {"input": gx})["output"])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    if quantize is None:
        _, grads = pm.evaluate(gparams, {"input": gx}, {"output": backend.array(cot)})
        np.testing.assert_allclose(np.asarray(grads["w"]), np.asarray(ref_grads["w"]), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- 3. static_inference folds multi-result primitives
NORM_CASES = {
    "layernorm": (lambda: LayerNorm(4), [2, 3, 4]),
    "layernorm_no_affine": (lambda: LayerNorm(4, elementwise_affine=False), [2, 3, 4]),
    "layernorm_no_bias": (lambda: LayerNorm(4, bias=False), [2, 3, 4]),
    "batchnorm2d": (lambda: BatchNorm2d(3), [2, 3, 4, 4]),
    "batchnorm2d_batch_stats": (lambda: BatchNorm2d(3, affine=False, track_running_stats=False), [2, 3, 4, 4]),
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", sorted(NORM_CASES))
def test_static_inference_folds_normalisation(case, variant):
    make, shape = NORM_CASES[case]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    backend = variant_backend(variant, "float32")
    results = {}
    for static in (False, True):
        model = Model()
        model |= make()(input=IOKey("input", value=x), output=IOKey("output"))
        pm = ml.compile(model, backend, static_inference=static)
        params = pm.randomize_params(seed=0)
        kw = {} if static else {"training": False}  # static_inference is inference mode
        results[static] = np.asarray(pm.evaluate(params, {}, **kw)["output"])
    np.testing.assert_allclose(results[True], results[False], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- 4. ConvTranspose2d gradient, output_padding >= stride
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    ("stride", "dilation", "output_padding", "padding", "groups"),
    [
        (1, 2, 1, 0, 1),
        (1, 2, 1, 1, 1),
        (1, 3, 2, 0, 2),
        (2, 3, 2, 1, 1),
        ((1, 2), (2, 1), (1, 0), (1, 0), 1),
        (2, 1, 1, 0, 1),
    ],
)
def test_conv_transpose2d_gradients_with_output_padding(variant, stride, dilation, output_padding, padding, groups):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 6))
    block = ConvTranspose2d(
        2, 4, 3, stride=stride, dilation=dilation, output_padding=output_padding, padding=padding, groups=groups
    )
    model = Model()
    model |= block(input=IOKey("x", shape=list(x.shape), role="param"), output=IOKey("output"))
    backend = variant_backend(variant, "float64")
    pm = ml.compile(model, backend)
    params = pm.randomize_params(seed=0)
    params["x"] = backend.array(x)
    out = pm.evaluate(params, {})["output"]
    cot = np.random.default_rng(1).standard_normal(tuple(out.shape))
    _, grads = pm.evaluate(params, {}, {"output": backend.array(cot)})

    w_key, b_key = (next(k for k in params if k.endswith(s)) for s in (".weight", ".bias"))
    tx, tw, tb = (torch.tensor(np.asarray(params[k]), requires_grad=True) for k in ("x", w_key, b_key))
    ty = torch.nn.functional.conv_transpose2d(
        tx, tw, tb, stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, groups=groups
    )
    ty.backward(torch.tensor(cot))
    np.testing.assert_allclose(np.asarray(out), ty.detach().numpy(), rtol=1e-9, atol=1e-9)
    for k, t in (("x", tx), (w_key, tw), (b_key, tb)):
        assert tuple(grads[k].shape) == tuple(t.shape), k
        np.testing.assert_allclose(np.asarray(grads[k]), t.grad.numpy(), rtol=1e-9, atol=1e-9, err_msg=k)


# ---------------------------------------------------------------- 5. shapes known only from compile(shapes=...)
A_SHAPE, B_SHAPE, C_SHAPE = (2, 3, 4), (4, 5), (5, 2)


def _matmul(model: Model, left: str = "a", right: str = "b", output: str | IOKey = "mm") -> None:
    model |= MatrixMultiply()(left=left, right=right, output=output)


def _slice(starts, stops, steps):
    return PrimitiveBlock("slice", starts=starts, stops=stops, steps=steps)


def _unflatten(axis, sizes):
    return PrimitiveBlock("unflatten", axis=axis, sizes=sizes)


def _after_matmul(make, *args):
    def build(model: Model) -> None:
        _matmul(model)
        model |= make(*args)(input="mm", output=IOKey("output"))

    return build


def _slice_then_matmul(model: Model) -> None:
    model |= _slice((None,), (1,), (None,))(input="a", output="s")
    _matmul(model, left="s", output=IOKey("output"))


def _matmul_slice_matmul(model: Model) -> None:
    _matmul(model)
    model |= _slice((None,), (1,), (None,))(input="mm", output="s")
    _matmul(model, left="s", right="c", output=IOKey("output"))


def _matmul_unflatten_matmul(model: Model) -> None:
    _matmul(model)
    model |= _unflatten(0, (1, 2))(input="mm", output="s")
    _matmul(model, left="s", right="c", output=IOKey("output"))


def _declared_leading_dim(model: Model) -> None:
    model |= MatrixMultiply()(left=IOKey("a", shape=[2, "..."]), right="b", output=IOKey("output"))


def _np_slice(x, starts, stops, steps):
    return x[tuple(slice(a, z, s) for a, z, s in zip(starts, stops, steps))]


def _np_unflatten(x, axis, sizes):
    axis %= x.ndim
    sizes = list(sizes)
    if -1 in sizes:
        sizes[sizes.index(-1)] = x.shape[axis] // -int(np.prod(sizes))
    return x.reshape(x.shape[:axis] + tuple(sizes) + x.shape[axis + 1 :])


SLICES = [
    ((None,), (1,), (None,)),
    ((1,), (None,), (None,)),
    ((None, 1), (None, 3), (None, None)),
    ((0,), (2,), (2,)),
    ((None, None, 1), (None, None, None), (None, None, 2)),
]
UNFLATTENS = [(0, (1, 2)), (1, (3, 1)), (2, (5, 1)), (0, (-1,)), (-1, (-1, 5)), (-2, (3, 1))]
SHAPE_CASES = {
    **{
        f"matmul-slice{args}": (_after_matmul(_slice, *args), lambda a, b, c, args=args: _np_slice(a @ b, *args))
        for args in SLICES
    },
    **{
        f"matmul-unflatten{args}": (
            _after_matmul(_unflatten, *args),
            lambda a, b, c, args=args: _np_unflatten(a @ b, *args),
        )
        for args in UNFLATTENS
    },
    "slice-matmul": (_slice_then_matmul, lambda a, b, c: a[:1] @ b),
    "matmul-slice-matmul": (_matmul_slice_matmul, lambda a, b, c: (a @ b)[:1] @ c),
    "matmul-unflatten-matmul": (_matmul_unflatten_matmul, lambda a, b, c: (a @ b).reshape(1, 2, 3, 5) @ c),
    "declared-leading-dim": (_declared_leading_dim, lambda a, b, c: a @ b),
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", sorted(SHAPE_CASES))
def test_shapes_given_at_compile_through_matmul(case, variant):
    build, reference = SHAPE_CASES[case]
    model = Model()
    build(model)
    rng = np.random.default_rng(0)
    data = {"a": rng.standard_normal(A_SHAPE), "b": rng.standard_normal(B_SHAPE), "c": rng.standard_normal(C_SHAPE)}
    expected = reference(**data)
    backend = variant_backend(variant, "float64")
    pm = ml.compile(model, backend, shapes={k: list(v.shape) for k, v in data.items() if k in _inputs(model)})
    assert list(pm.shapes["output"]) == list(expected.shape)
    out = pm.evaluate(
        pm.randomize_params(seed=0), {k: backend.array(v) for k, v in data.items() if k in _inputs(model)}
    )["output"]
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-12, atol=1e-12)


def _inputs(model: Model) -> set[str]:
    return {"a", "b", "c"} & set(model.shapes())


@pytest.mark.parametrize(
    ("build", "shapes", "needle"),
    [
        (_after_matmul(_unflatten, 0, (2, 2)), {"a": [3, 3, 4], "b": [4, 5]}, "unflatten"),
        (_after_matmul(_slice, (None,) * 4, (1,) * 4, (None,) * 4), {"a": [3, 4], "b": [4, 5]}, "slice"),
        (_slice_then_matmul, {"a": [3], "b": [4, 5]}, "matrixmultiply"),
    ],
)
def test_shapes_given_at_compile_through_matmul_mismatch(build, shapes, needle):
    pytest.importorskip("mithril_numpy")
    model = Model()
    build(model)
    with pytest.raises(ShapeMismatchError, match=needle):
        ml.compile(model, ml.NumpyBackend(dtype=ml.float64), shapes=shapes)


# ---------------------------------------------------------------- 6. BatchNorm without num_features
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    ("make", "torch_cls", "shape"),
    [
        (lambda **kw: BatchNorm2d(**kw), "BatchNorm2d", (4, 3, 5, 5)),
        (lambda **kw: BatchNorm1d(**kw), "BatchNorm1d", (4, 3, 6)),
        (lambda **kw: BatchNorm1d(**kw), "BatchNorm1d", (6, 3)),
    ],
)
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_infers_num_features_at_compile(variant, make, torch_cls, shape, affine):
    torch = pytest.importorskip("torch")
    backend = variant_backend(variant, "float64")
    x = np.random.default_rng(0).standard_normal(shape)
    cot = np.random.default_rng(1).standard_normal(shape)
    model = Model()
    model |= make(affine=affine)(input=IOKey("x", shape=list(shape), role="param"), output=IOKey("output"))
    pm = ml.compile(model, backend)
    params = pm.randomize_params(seed=0)
    assert {k: tuple(v.shape) for k, v in params.items() if k != "x"} == {k: (shape[1],) for k in params if k != "x"}
    params["x"] = backend.array(x)
    ref = getattr(torch.nn, torch_cls)(shape[1], affine=affine).double()
    tx = torch.tensor(x, requires_grad=True)
    ty = ref(tx)
    ty.backward(torch.tensor(cot))
    outs, grads, state = pm.evaluate(params, {}, {"output": backend.array(cot)}, return_state=True)
    np.testing.assert_allclose(np.asarray(outs["output"]), ty.detach().numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.asarray(grads["x"]), tx.grad.numpy(), rtol=1e-8, atol=1e-9)
    for k, v in state.items():
        np.testing.assert_allclose(np.asarray(v), getattr(ref, k.rsplit(".", 1)[-1]).numpy(), rtol=1e-9, atol=1e-12)
    ref.eval()
    evaluated = pm.evaluate({**params, **state}, {}, training=False)["output"]
    np.testing.assert_allclose(np.asarray(evaluated), ref(torch.tensor(x)).detach().numpy(), rtol=1e-9, atol=1e-9)


def test_batchnorm_without_num_features_reports_a_mismatched_weight():
    pytest.importorskip("mithril_numpy")
    model = Model()
    with pytest.raises(ShapeMismatchError, match=r"batchnorm2d_0\.weight \(BatchNorm2d, shape \[3\]\).*\[4\]"):
        model |= BatchNorm2d()(
            input=IOKey("input", shape=[2, 3, 4, 4]), weight=IOKey("w", shape=[4]), output=IOKey("output")
        )
    model = Model()  # the input known only at compile: the given shape is reported against the weight's
    model |= BatchNorm2d()(input="input", weight=IOKey("w", shape=[4]), output=IOKey("output"))
    with pytest.raises(ShapeMismatchError, match=r"'input' is \[2, 3, 4, 4\] but the model needs \[d\d+, 4, "):
        ml.compile(model, ml.NumpyBackend(dtype=ml.float64), shapes={"input": [2, 3, 4, 4]})


# ---------------------------------------------------------------- 7. torch.compile without graph breaks
def _transpose_model() -> Model:
    model = Model()
    model |= Transpose()(input="input", output=IOKey("output"))
    return model


def _linear_no_bias_model() -> Model:
    model = Model()
    model |= Linear(5, use_bias=False)(input="input", output=IOKey("output"))
    return model


@pytest.mark.parametrize("autodiff", ["mithril", "torch"])
@pytest.mark.parametrize("gradients", [False, True])
@pytest.mark.parametrize(
    ("make", "shape"), [(_transpose_model, [3, 4]), (_transpose_model, [2, 3, 4]), (_linear_no_bias_model, [3, 4])]
)
def test_torch_compile_traces_without_graph_breaks(make, shape, gradients, autodiff):
    """fullgraph=True turns any graph break into an error, which TorchBackend answers by warning and
    running eagerly; the eager dynamo backend traces without compiling kernels (fast)."""
    pytest.importorskip("mithril_torch")
    import warnings

    if gradients and autodiff == "torch":
        pytest.skip(
            "torch.autograd.grad inside the compiled function is a graph break by design (dynamo's "
            "trace_autograd_ops is off): autodiff='torch' compiles the forward only"
        )
    backend = ml.TorchBackend(
        dtype=ml.float32, autodiff=autodiff, compile_options={"fullgraph": True, "backend": "eager"}
    )
    model = make()
    if gradients and make is _transpose_model:  # a param to differentiate
        model = Model()
        model |= Transpose()(input=IOKey("w", shape=shape, role="param", init=uniform_fan_in), output=IOKey("output"))
    has_input = "input" in model.shapes()
    pm = ml.compile(model, backend, shapes={"input": shape} if has_input else {}, jit=True)
    params = pm.randomize_params(seed=0)
    inputs = {"input": backend.randn(*shape)} if has_input else {}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*torch.compile is not usable.*", category=RuntimeWarning)
        out = pm.evaluate(params, inputs)["output"]
        if gradients:
            pm.evaluate(params, inputs, {"output": backend.ones(*out.shape)})


# ---------------------------------------------------------------- 8. Concat's docstring names its real terminals
def test_concat_docstring_names_its_terminals():
    import re

    block = Concat(n=3, axis=1)
    doc = Concat.__doc__ or ""
    named = set(re.findall(r"``(\w+)_0``", doc)) | set(re.findall(r"``(\w+)_\{n-1\}``", doc))
    assert named == {block.input_terminals()[0].rsplit("_", 1)[0]}
    assert block.input_terminals() == ["inputs_0", "inputs_1", "inputs_2"]
    assert f"``{block.output_terminals()[0]}``" in doc
    example = re.search(r"``(Concat\(.*?\))``", doc)
    assert example is not None
    model = Model()
    model |= eval(example.group(1), {"Concat": Concat})  # the docstring's example connects
    assert {"a", "b", "ab"} <= set(model.shapes())


# ---------------------------------------------------------------- silent results: block arguments
BAD_ARGUMENTS = [
    (lambda: Linear(dimension=0), r"^Linear: dimension must be an int >= 1.*got 0$"),
    (lambda: Linear(dimension=4, use_bias="False"), r"^Linear: use_bias must be True or False, got 'False' \(str\)$"),
    (lambda: Linear(dimension=4, name="head", use_bias="False"), r"^Linear 'head': use_bias .*'False'"),
    (lambda: Conv2d(3, 0), r"^Conv2d: out_channels must be an int >= 1, got 0$"),
    (lambda: Conv2d(3, 4, padding=-1), r"^Conv2d: padding must be an int >= 0.*got -1$"),
    (lambda: Conv2d(3, 4, padding=(1, -2)), r"^Conv2d: padding .*got \(1, -2\)$"),
    (lambda: Conv2d(3, 4, stride=0), r"^Conv2d: stride must be an int >= 1.*got 0$"),
    (lambda: Conv2d(3, 4, groups=0), r"^Conv2d: groups must be an int >= 1, got 0$"),
    (lambda: Conv2d(4, 6, groups=4), r"^Conv2d: out_channels 6 not divisible by groups 4$"),
    (lambda: Conv2d(3, 4, bias="False"), r"^Conv2d: bias must be True or False"),
    (lambda: Conv1d(3, 0, 3), r"^Conv1d: out_channels must be an int >= 1, got 0$"),
    (lambda: Conv1d(3, 4, 3, padding=-1), r"^Conv1d: padding .*got -1$"),
    (lambda: ConvTranspose2d(3, 4, 3, padding=-1), r"^ConvTranspose2d: padding .*got -1$"),
    (lambda: ConvTranspose2d(3, 4, 3, output_padding=-1), r"^ConvTranspose2d: output_padding .*got -1$"),
    (lambda: MaxPool2d(2, padding=-1), r"^MaxPool2d: padding .*got -1$"),
    (lambda: AvgPool2d(2, padding=-1), r"^AvgPool2d: padding .*got -1$"),
    (lambda: AvgPool2d(2, count_include_pad="False"), r"^AvgPool2d: count_include_pad must be True or False"),
    (lambda: MaxPool1d(2, padding=-1), r"^MaxPool1d: padding .*got -1$"),
    (lambda: BatchNorm2d(3, affine="False"), r"^BatchNorm2d: affine must be True or False, got 'False' \(str\)$"),
    (lambda: BatchNorm2d(3, track_running_stats="False"), r"^BatchNorm2d: track_running_stats must be True"),
    (lambda: BatchNorm2d(0), r"^BatchNorm2d: num_features must be an int >= 1.*got 0$"),
    (lambda: BatchNorm1d(3, momentum=2.0), r"^BatchNorm1d: momentum must be a number in \[0.0, 1.0\], got 2.0$"),
    (lambda: LayerNorm(4, elementwise_affine="False"), r"^LayerNorm: elementwise_affine must be True or False"),
    (lambda: LayerNorm(0), r"^LayerNorm: normalized_shape .*got 0$"),
    (lambda: GroupNorm(0, 4), r"^GroupNorm: num_groups must be an int >= 1, got 0$"),
    (lambda: RMSNorm(4, elementwise_affine="no"), r"^RMSNorm: elementwise_affine must be True or False"),
    (lambda: Embedding(0, 3), r"^Embedding: num_embeddings must be an int >= 1.*got 0$"),
    (lambda: MultiHeadAttention(4, 0), r"^MultiHeadAttention: num_heads must be an int >= 1, got 0$"),
    (lambda: MultiHeadAttention(4, 2, causal="False"), r"^MultiHeadAttention: causal must be True or False"),
    (lambda: LSTM(3, 4, batch_first="False"), r"^LSTM: batch_first must be True or False"),
    (lambda: MLP([3, 4], use_bias="False"), r"^MLP: use_bias must be True or False"),
]


@pytest.mark.parametrize(("make", "message"), BAD_ARGUMENTS, ids=[m for _, m in BAD_ARGUMENTS])
def test_block_arguments_are_checked_at_construction(make, message):
    with pytest.raises(ModelBuildError, match=message):
        make()


def test_valid_block_arguments_are_still_accepted():
    Linear(np.int64(4), use_bias=np.bool_(False))
    Conv2d(3, 4, kernel_size=(1, 3), padding="same")
    Conv2d(4, 8, 3, padding=(0, 1), groups=2)
    Conv1d(3, 4, 3, padding="valid")
    ConvTranspose2d(3, 4, 3, stride=2, output_padding=1)
    BatchNorm2d(None, momentum=0, eps=0)
    LayerNorm([3, 4])
    MaxPool2d((2, 3), stride=1, padding=(1, 1))


# ---------------------------------------------------------------- found by tests/reliability/fuzz.py
@pytest.mark.parametrize("variant", VARIANTS)
def test_sign_has_a_zero_gradient(variant):
    """``x * sign(x)`` (= |x|) on a path from a param raised UnsupportedError ("sign has no gradient rule");
    sign is piecewise constant: its gradient is zero, as torch.sign's, so d(w * sign(w))/dw = sign(w)."""
    from mithril.models.block import primitive_block

    model = Model()
    w = IOKey("w", shape=[2, 3], role="param")
    model |= primitive_block("sign")(input=w, output="s")
    model |= primitive_block("mul")(left="w", right="s", output=IOKey("output"))
    backend = variant_backend(variant, "float64")
    pm = ml.compile(model, backend)
    value = np.array([[-1.5, 0.0, 2.0], [0.25, -3.0, 1.0]])
    out, grads = pm.evaluate({"w": backend.array(value)}, {}, {"output": backend.array(np.ones((2, 3)))})
    np.testing.assert_allclose(backend.to_numpy(out["output"]), np.abs(value))
    np.testing.assert_allclose(backend.to_numpy(grads["w"]), np.sign(value))


def test_a_jitted_kink_differs_from_eager_only_at_the_kink():
    """Fuzzer seed 972: |x*x - min(x*x)| differentiated under JaxBackend(jit=True) differs from NumPy at the
    argmin, and only there. XLA contracts ``x*x - m`` into an FMA, so the exact 0 at the argmin comes out
    as ~1e-20 (plain jax.jit does the same), and XLA's fusions of the backward pass, which recompute that
    difference, do not all round it alike: abs's derivative there (the sign of 0 or of 1e-20) is not one
    value. A point of measure zero; eagerly, the JAX backend agrees with NumPy exactly. The fuzzer notes such
    differences (fuzz.KINKS) instead of failing on them."""
    pytest.importorskip("mithril_jax")
    from mithril.models import Min, Multiply, Subtract
    from mithril.models.primitive_blocks import Abs

    model = Model()
    model |= Multiply()(left=IOKey("w", shape=[16], role="param"), right="w", output="sq")
    model |= Min(axis=0)(input="sq", output="m")
    model |= Subtract()(left="sq", right="m", output="d")
    model |= Abs()(input="d", output=IOKey("output"))
    w = np.random.default_rng(0).standard_normal(16)
    kink = int(np.argmin(w * w))
    results = {}
    for name, jit in (("numpy", False), ("jax", False), ("jax", True)):
        backend = variant_backend(name, "float64")
        pm = ml.compile(model, backend, jit=jit)
        with backend.scope():
            out, g = pm.evaluate({"w": backend.array(w)}, {}, {"output": backend.array(np.ones(16))})
        results[name, jit] = (np.asarray(backend.to_numpy(out["output"])), np.asarray(backend.to_numpy(g["w"])))
    (out_np, g_np), (_out_eager, g_eager), (out_jit, g_jit) = (
        results[k] for k in (("numpy", False), ("jax", False), ("jax", True))
    )
    np.testing.assert_allclose(g_eager, g_np, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out_jit, out_np, rtol=1e-12, atol=1e-15)
    assert out_np[kink] == 0.0 and abs(out_jit[kink]) < 1e-15  # the exact zero, and XLA's FMA residual
    others = np.arange(16) != kink
    np.testing.assert_allclose(g_jit[others], g_np[others], rtol=1e-12, atol=1e-12)
