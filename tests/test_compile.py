"""ml.compile and the physical model: keywords, errors, gradients against independent oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest

import mithril as ml
from mithril.errors import (
    CompileError,
    EvaluationError,
    MissingInputError,
    ParamsError,
    ShapeMismatchError,
    ShapeUnknownError,
    UnknownKeyError,
    UnsupportedError,
)
from mithril.models import BatchNorm2d, Conv2d, Flatten, IOKey, Linear, MaxPool2d, Model, Relu

pytest.importorskip("mithril_numpy")


def quickstart() -> Model:
    model = Model()
    model |= Linear(dimension=64)
    model += Relu()
    model += Linear(dimension=10)
    return model


def small_cnn() -> Model:
    cnn = Model()
    cnn |= Conv2d(in_channels=3, out_channels=4, kernel_size=3, padding=1)(input="input", output="conv1")
    cnn += BatchNorm2d(num_features=4)(input="conv1", output="bn1")
    cnn += Relu()(input="bn1", output="relu1")
    cnn += MaxPool2d(kernel_size=2)(input="relu1", output="pool1")
    cnn += Flatten()(input="pool1", output="flat")
    cnn += Linear(dimension=5)(input="flat", output="output")
    return cnn


def finite_difference_check(pm, params, inputs, rng, eps=1e-6, n_checks=6):
    """Compare gradients with central differences of <g, f(params)> on a few random coordinates."""
    be = pm.backend
    out = pm.evaluate(params, inputs)
    g = {k: rng.standard_normal(np.shape(v)) for k, v in out.items()}
    _, grads = pm.evaluate(params, inputs, {k: be.array(v) for k, v in g.items()})

    def objective(p):
        o = pm.evaluate(p, inputs)
        return sum(float(np.sum(g[k] * be.to_numpy(o[k]))) for k in o)

    for name in pm.param_keys:
        base = be.to_numpy(params[name])
        for _ in range(n_checks):
            idx = tuple(rng.integers(0, s) for s in base.shape)
            plus, minus = base.copy(), base.copy()
            plus[idx] += eps
            minus[idx] -= eps
            fd = (objective({**params, name: be.array(plus)}) - objective({**params, name: be.array(minus)})) / (
                2 * eps
            )
            got = be.to_numpy(grads[name])[idx]
            assert got == pytest.approx(fd, rel=1e-5, abs=1e-7), (name, idx)


def test_quickstart_gradients_match_central_differences(numpy64, rng):
    pm = ml.compile(quickstart(), numpy64, shapes={"input": [8, 20]})
    params = pm.randomize_params(seed=1)
    finite_difference_check(pm, params, {"input": rng.standard_normal((8, 20))}, rng)


def test_cnn_gradients_match_central_differences(numpy64, rng):
    pm = ml.compile(small_cnn(), numpy64, shapes={"input": [2, 3, 6, 6]})
    params = pm.randomize_params(seed=1)
    # BatchNorm in training mode: gradients flow through the batch statistics too
    finite_difference_check(pm, params, {"input": rng.standard_normal((2, 3, 6, 6))}, rng, n_checks=3)


def test_cnn_matches_torch_nn_in_training_and_inference(numpy64, rng):
    torch = pytest.importorskip("torch")
    pm = ml.compile(small_cnn(), numpy64, shapes={"input": [4, 3, 6, 6]})
    params = pm.randomize_params(seed=3)
    params["batchnorm2d_0.running_mean"] = rng.standard_normal(4)
    params["batchnorm2d_0.running_var"] = rng.uniform(0.5, 2.0, 4)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(36, 5),
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
    net.load_state_dict({k: torch.tensor(params[v]) for k, v in names.items()}, strict=False)
    x = rng.standard_normal((4, 3, 6, 6))
    out, state = pm.evaluate(params, {"input": x}, return_state=True)
    net.train()
    ref = net(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(out["output"], ref, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(state["batchnorm2d_0.running_mean"], net[1].running_mean.numpy(), rtol=1e-10)
    np.testing.assert_allclose(state["batchnorm2d_0.running_var"], net[1].running_var.numpy(), rtol=1e-10)
    net.eval()
    params.update(
        {
            "batchnorm2d_0.running_mean": net[1].running_mean.numpy().copy(),
            "batchnorm2d_0.running_var": net[1].running_var.numpy().copy(),
        }
    )
    inf = ml.compile(small_cnn(), numpy64, shapes={"input": [4, 3, 6, 6]}, static_inference=True)
    np.testing.assert_allclose(
        inf.evaluate(params, {"input": x})["output"], net(torch.tensor(x)).detach().numpy(), rtol=1e-9, atol=1e-10
    )
    np.testing.assert_allclose(
        pm.evaluate(params, {"input": x}, training=False)["output"],
        net(torch.tensor(x)).detach().numpy(),
        rtol=1e-9,
        atol=1e-10,
    )


def test_randomize_params_follows_torch_nn_defaults(numpy64):
    pm = ml.compile(small_cnn(), numpy64, shapes={"input": [2, 3, 6, 6]})
    p = pm.randomize_params(seed=0)
    bound = 1 / math.sqrt(3 * 3 * 3)
    assert np.abs(p["conv2d_0.weight"]).max() <= bound and np.abs(p["conv2d_0.weight"]).max() > 0.8 * bound
    assert np.abs(p["conv2d_0.bias"]).max() <= bound
    assert np.abs(p["linear_0.weight"]).max() <= 1 / math.sqrt(36)
    np.testing.assert_array_equal(p["batchnorm2d_0.weight"], 1)
    np.testing.assert_array_equal(p["batchnorm2d_0.running_var"], 1)
    np.testing.assert_array_equal(p["batchnorm2d_0.running_mean"], 0)
    q = pm.randomize_params(seed=0)
    assert all(np.array_equal(p[k], q[k]) for k in p)


def test_shapes_unknown_at_compile_are_compiled_per_shape_set(numpy64, rng):
    model = Model()
    model |= Linear(dimension=3)(input=IOKey("input", shape=[None, 4]))
    pm = ml.compile(model, numpy64)
    params = pm.randomize_params()
    for batch in (1, 5):
        assert pm.evaluate(params, {"input": rng.standard_normal((batch, 4))})["output"].shape == (batch, 3)


def test_static_shapes_rejects_other_shapes(numpy64, rng):
    pm = ml.compile(quickstart(), numpy64, shapes={"input": [4, 20]}, static_shapes=True)
    params = pm.randomize_params()
    with pytest.raises(ShapeMismatchError, match="static_shapes"):
        pm.evaluate(params, {"input": rng.standard_normal((5, 20))})
    with pytest.raises(ShapeUnknownError):
        ml.compile(quickstart(), numpy64, static_shapes=True)


def test_params_and_inputs_errors_are_clear(numpy64, rng):
    pm = ml.compile(quickstart(), numpy64, shapes={"input": [4, 20]})
    params = pm.randomize_params()
    x = {"input": rng.standard_normal((4, 20))}
    with pytest.raises(ParamsError, match=r"missing.*linear_1.bias"):
        pm.evaluate({k: v for k, v in params.items() if k != "linear_1.bias"}, x)
    with pytest.raises(ParamsError, match=r"unknown key.*extra"):
        pm.evaluate({**params, "extra": np.zeros(1)}, x)
    with pytest.raises(ParamsError, match=r"linear_0.weight.*\[64, 21\].*\[64, 20\]"):
        pm.evaluate({**params, "linear_0.weight": np.zeros((64, 21))}, x)
    with pytest.raises(MissingInputError, match="input"):
        pm.evaluate(params, {})
    with pytest.raises(UnknownKeyError, match="inputz"):
        pm.evaluate(params, {**x, "inputz": 1})
    with pytest.raises(EvaluationError, match="float32"):
        pm.evaluate(params, {"input": x["input"].astype(np.float32)})
    with pytest.raises(EvaluationError, match="input"):
        pm.evaluate(params, {"input": [[1.0] * 20] * 4})
    with pytest.raises(ShapeMismatchError, match="input"):
        pm.evaluate(params, {"input": rng.standard_normal((4, 21))})
    with pytest.raises(UnknownKeyError, match="shapes"):
        ml.compile(quickstart(), numpy64, shapes={"inptu": [4, 20]})
    with pytest.raises(UnknownKeyError, match="output_gradients"):
        pm.evaluate(params, x, {"out": np.zeros((4, 10))})


def test_jit_on_a_backend_without_one_is_an_error(numpy64):
    with pytest.raises(UnsupportedError, match="jit"):
        ml.compile(quickstart(), numpy64, jit=True)


def test_gradient_checkpointing_recomputes_and_gives_the_same_gradients(numpy64, rng):
    model = Model()
    model |= Linear(dimension=16)(input=IOKey("input", shape=[4, 8]))
    for _ in range(12):
        model += Relu()
        model += Linear(dimension=16)
    plain = ml.compile(model, numpy64)
    ckpt = ml.compile(model, numpy64, gradient_checkpointing=True)
    params = plain.randomize_params(seed=0)
    x = {"input": rng.standard_normal((4, 8))}
    g = {"output": rng.standard_normal((4, 16))}
    _, g1 = plain.evaluate(params, x, g)
    _, g2 = ckpt.evaluate(params, x, g)
    for k in g1:
        np.testing.assert_allclose(g2[k], g1[k], rtol=1e-12)
    assert "(recomputed)" in ckpt.source and "(recomputed)" not in plain.source


def test_static_inference_folds_constants(numpy64, rng):
    model = Model()
    model |= Linear(dimension=3)(input="x", weight="w", output="h")
    model |= Linear(dimension=3)(input="h", output=IOKey("output"))
    w = rng.standard_normal((3, 2))
    x = rng.standard_normal((5, 2))
    pm = ml.compile(model, numpy64, constants={"w": w, "x": x}, static_inference=True)
    params = pm.randomize_params()
    assert set(pm.input_keys) == set()
    src = pm.source
    assert src.count("k_linear") == 1 and "k_matmul" not in src  # x @ w.T was computed at compile time
    ref = (x @ w.T + params["linear_0.bias"]) @ params["linear_1.weight"].T + params["linear_1.bias"]
    np.testing.assert_allclose(pm.evaluate(params)["output"], ref, rtol=1e-12)
    with pytest.raises(UnsupportedError, match="static_inference"):
        pm.evaluate(params, {}, {"output": np.ones((5, 3))})


def test_common_subexpressions_are_merged(numpy64, rng):
    model = Model()
    model |= Relu()(input="x", output="a")
    model |= Relu()(input="x", output="b")
    model |= ml.models.Add()(left="a", right="b", output=IOKey("output"))
    pm = ml.compile(model, numpy64, shapes={"x": [3]})
    assert pm.source.count("k_relu") == 1
    x = rng.standard_normal(3)
    np.testing.assert_allclose(pm.evaluate({}, {"x": x})["output"], 2 * np.maximum(x, 0))


def test_generated_source_is_readable_and_can_be_written(numpy64, tmp_path):
    path = tmp_path / "model.py"
    pm = ml.compile(quickstart(), numpy64, shapes={"input": [2, 20]}, source_path=str(path))
    assert "def run(params, inputs, cotangents):" in pm.source
    assert "linear_0.weight" in pm.source
    assert path.read_text() == pm.source


def test_summary_lists_blocks_shapes_and_parameter_counts(numpy64):
    pm = ml.compile(small_cnn(), numpy64, shapes={"input": [8, 3, 6, 6]})
    s = pm.summary()
    assert "conv2d_0" in s and "[8, 4, 6, 6]" in s and "112" in s  # 4*3*3*3 + 4
    assert "trainable params" in s


def test_compile_rejects_non_models_and_bad_keyword_combinations(numpy64):
    with pytest.raises(CompileError):
        ml.compile("model", numpy64)
    with pytest.raises(CompileError):
        ml.compile(quickstart(), numpy64, static_inference=True, gradient_checkpointing=True)


def test_building_and_compiling_deep_models_is_linear_and_recursion_free(numpy64):
    model = Model()
    model |= Linear(dimension=8)(input=IOKey("input", shape=[2, 8]))
    for _ in range(1500):
        model += Relu()
        model += Linear(dimension=8)
    pm = ml.compile(model, numpy64)
    assert len(pm.param_keys) == 2 * 1501
