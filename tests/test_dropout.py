"""Dropout and the per-call randomness behind it, on every installed backend.

Variants: each installed backend among NumPy, PyTorch and JAX; JAX once more with
``jit=True``; PyTorch and JAX once with their own autodiff (``autodiff="torch"`` /
``"jax"``). PyTorch with ``jit=True`` (torch.compile, seconds per graph) has one test
that checks the same properties on one model. Masks are read back from outputs (an element is kept iff its output is
non-zero; inputs are bounded away from zero), so no test knows a backend's random
numbers: they check the distribution (a binomial bound on the kept fraction), the
scaling, the gradient of the same call, reproducibility after ``backend.seed`` and
independence between calls and between Dropout blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import mithril as ml
from mithril.errors import ModelBuildError, UnsupportedError
from mithril.models import Dropout, IOKey, Linear, Model, MultiHeadAttention, Relu, TransformerBlock

BACKEND_CLASSES = {"numpy": "NumpyBackend", "torch": "TorchBackend", "jax": "JaxBackend"}
INSTALLED = sorted(set(ml.plugins.backends()) & set(BACKEND_CLASSES))
P = 0.3
#: the kept fraction must lie within this many binomial standard deviations of 1 - p
Z = 5.0


@dataclass(frozen=True)
class Variant:
    backend: str
    backend_options: dict[str, Any] = field(default_factory=dict)
    compile_options: dict[str, Any] = field(default_factory=dict)

    def make(self) -> Any:
        return getattr(ml, BACKEND_CLASSES[self.backend])(**self.backend_options)


def _variants() -> list[Any]:
    # torch.compile takes seconds per graph: PyTorch with jit=True has one test of its own (below)
    extra = {
        "torch": [("autograd", {"autodiff": "torch"}, {})],
        "jax": [("jit", {}, {"jit": True}), ("vjp", {"autodiff": "jax"}, {})],
    }
    out = []
    for name in INSTALLED:
        out.append(pytest.param(Variant(name), id=name))
        for suffix, b_opts, c_opts in extra.get(name, []):
            out.append(pytest.param(Variant(name, b_opts, c_opts), id=f"{name}-{suffix}"))
    return out


VARIANTS = _variants()


@pytest.fixture(params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> Variant:
    return request.param


def away_from_zero(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Values in ±[0.5, 1.5]: an output is zero exactly when the element was dropped."""
    return rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)


def compile_for(variant: Variant, model: Model, shapes: dict[str, list[int]], **kw: Any) -> tuple[Any, Any]:
    backend = variant.make()
    return backend, ml.compile(model, backend, shapes=shapes, **variant.compile_options, **kw)


def numpy_of(backend: Any, tree: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: np.asarray(backend.to_numpy(v), dtype=np.float64) for k, v in tree.items()}


def dropout_of_param(p: float, shape: tuple[int, ...]) -> Model:
    """``output = Dropout(p)(w)`` with ``w`` a parameter, so ``evaluate`` returns its gradient."""
    model = Model()
    model |= Dropout(p)(input=IOKey("w", shape=list(shape), role="param"), output=IOKey("output"))
    return model


def check_dropped_or_scaled(x: np.ndarray, out: np.ndarray, p: float) -> np.ndarray:
    """Every output is 0 or x / (1 - p); returns the keep mask."""
    keep = out != 0
    np.testing.assert_allclose(out[keep], x[keep] / (1 - p), rtol=1e-6)
    return keep


# ---------------------------------------------------------------- semantics
def test_inference_is_the_exact_identity_with_no_node_left(variant: Variant) -> None:
    backend, pm = compile_for(variant, Dropout(P), {"input": [8, 16]}, training=False)
    x = backend.array(away_from_zero(np.random.default_rng(0), 8, 16))
    out = pm.evaluate({}, {"input": x})["output"]
    assert np.array_equal(backend.to_numpy(out), backend.to_numpy(x))
    assert "bernoulli" not in pm.source and "seed" not in pm.source


def test_training_zeroes_about_p_and_scales_the_rest(variant: Variant) -> None:
    n_rows, n_cols = 256, 512
    backend, pm = compile_for(variant, Dropout(P), {"input": [n_rows, n_cols]})
    x_np = away_from_zero(np.random.default_rng(1), n_rows, n_cols)
    backend.seed(0)
    out = backend.to_numpy(pm.evaluate({}, {"input": backend.array(x_np)})["output"]).astype(np.float64)
    x = backend.to_numpy(backend.array(x_np)).astype(np.float64)  # the values the backend holds
    keep = check_dropped_or_scaled(x, out, P)
    n = keep.size
    assert abs(keep.mean() - (1 - P)) <= Z * math.sqrt(P * (1 - P) / n), keep.mean()
    # no structure: rows and columns are kept alike
    for axis in (0, 1):
        per = keep.mean(axis=axis)
        m = keep.shape[axis]
        assert np.all(np.abs(per - (1 - P)) <= Z * math.sqrt(P * (1 - P) / m))


def test_gradient_is_the_output_gradient_through_the_same_mask(variant: Variant) -> None:
    shape = (64, 96)
    backend, pm = compile_for(variant, dropout_of_param(P, shape), {})
    rng = np.random.default_rng(2)
    w = backend.array(away_from_zero(rng, *shape))
    g = backend.array(rng.standard_normal(shape))
    outputs, grads = pm.evaluate({"w": w}, {}, {"output": g})
    out = numpy_of(backend, outputs)["output"]
    w_np, g_np = (backend.to_numpy(a).astype(np.float64) for a in (w, g))
    keep = check_dropped_or_scaled(w_np, out, P)
    assert 0 < keep.mean() < 1
    np.testing.assert_allclose(numpy_of(backend, grads)["w"], g_np * keep / (1 - P), rtol=1e-6, atol=0)


def test_reseeding_repeats_masks_and_successive_calls_differ(variant: Variant) -> None:
    shape = (32, 64)
    backend, pm = compile_for(variant, dropout_of_param(P, shape), {})
    params = {"w": backend.array(away_from_zero(np.random.default_rng(3), *shape))}
    g = {"output": backend.ones(*shape)}

    def masks(with_gradients: bool) -> list[np.ndarray]:
        backend.seed(11)
        runs = [pm.evaluate(params, {}, g)[0] if with_gradients else pm.evaluate(params, {}) for _ in range(3)]
        return [backend.to_numpy(r["output"]) != 0 for r in runs]

    first = masks(with_gradients=False)
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
    again = masks(with_gradients=False)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    # the gradient graph draws the same masks: a node's stream does not depend on the compiled variant
    assert all(np.array_equal(a, b) for a, b in zip(first, masks(with_gradients=True)))


def test_two_dropout_blocks_draw_different_masks(variant: Variant) -> None:
    model = Model()
    model |= Dropout(0.5, name="a")(input=IOKey("input", shape=[32, 64]), output=IOKey("first"))
    model |= Dropout(0.5, name="b")(input="input", output=IOKey("second"))
    backend, pm = compile_for(variant, model, {})
    x = backend.array(away_from_zero(np.random.default_rng(4), 32, 64))
    out = pm.evaluate({}, {"input": x})
    first, second = (backend.to_numpy(out[k]) != 0 for k in ("first", "second"))
    agree = np.mean(first == second)  # independent halves agree on about half the elements
    assert abs(agree - 0.5) <= Z * math.sqrt(0.25 / first.size), agree


def mlp_with_dropout() -> Model:
    model = Model()
    model |= Linear(dimension=32)(input=IOKey("input", shape=[16, 8]))
    model += Relu()
    model += Dropout(P)
    model += Linear(dimension=32)
    model += Relu()
    model += Dropout(0.5)
    model += Linear(dimension=4)
    return model


def test_gradient_checkpointing_reuses_the_masks(variant: Variant) -> None:
    backend = variant.make()
    if backend.differentiates_natively:  # its own autodiff: checkpointing is refused, not ignored
        with pytest.raises(ml.errors.UnsupportedError, match="gradient_checkpointing"):
            ml.compile(mlp_with_dropout(), backend, gradient_checkpointing=True, **variant.compile_options)
        return
    plain = ml.compile(mlp_with_dropout(), backend, **variant.compile_options)
    ckpt = ml.compile(mlp_with_dropout(), backend, gradient_checkpointing=True, **variant.compile_options)
    params = plain.randomize_params(seed=5)
    x = backend.array(np.random.default_rng(5).standard_normal((16, 8)))
    g = {"output": backend.array(np.random.default_rng(6).standard_normal((16, 4)))}
    results = []
    for pm in (plain, ckpt):
        backend.seed(21)
        results.append(pm.evaluate(params, {"input": x}, g))
    (out_a, grad_a), (out_b, grad_b) = results
    for a, b in ((out_a, out_b), (grad_a, grad_b)):
        na, nb = numpy_of(backend, a), numpy_of(backend, b)
        for k in na:
            np.testing.assert_allclose(na[k], nb[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert ckpt.source.count("k_bernoulli(") == 2  # the draws are kept, not recomputed


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_p_zero_is_the_identity_and_p_one_gives_zeros(variant: Variant, p: float) -> None:
    shape = (4, 6)
    backend, pm = compile_for(variant, dropout_of_param(p, shape), {})
    w = away_from_zero(np.random.default_rng(7), *shape)
    g = np.random.default_rng(8).standard_normal(shape)
    outputs, grads = pm.evaluate({"w": backend.array(w)}, {}, {"output": backend.array(g)})
    out, gw = numpy_of(backend, outputs)["output"], numpy_of(backend, grads)["w"]
    held = backend.to_numpy(backend.array(w)).astype(np.float64)
    if p == 0.0:
        np.testing.assert_array_equal(out, held)
        np.testing.assert_allclose(gw, backend.to_numpy(backend.array(g)).astype(np.float64), rtol=0)
    else:
        assert not out.any() and not gw.any()
    assert "bernoulli" not in pm.source


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_p_outside_zero_one_is_a_build_error(p: Any) -> None:
    with pytest.raises(ModelBuildError, match="Dropout: dropout probability must be a number in"):
        Dropout(p)
    with pytest.raises(ModelBuildError, match="MultiHeadAttention"):
        MultiHeadAttention(8, 2, dropout=p)


@pytest.mark.skipif("jax" not in INSTALLED, reason="needs mithril-jax")
def test_jax_jit_traces_once_for_any_number_of_seeds() -> None:
    backend = ml.JaxBackend()
    keys = []
    make_key = backend.random_key

    def counting(seed: Any, stream: int) -> Any:  # runs when the generated code is traced, not per call
        keys.append(stream)
        return make_key(seed, stream)

    backend.random_key = counting  # type: ignore[method-assign]
    pm = ml.compile(Dropout(P), backend, shapes={"input": [8, 8]}, jit=True)
    x = backend.array(away_from_zero(np.random.default_rng(9), 8, 8))
    masks = [backend.to_numpy(pm.evaluate({}, {"input": x})["output"]) != 0 for _ in range(4)]
    assert len(keys) == 1
    assert len({m.tobytes() for m in masks}) == 4


@pytest.mark.skipif("torch" not in INSTALLED, reason="needs mithril-torch")
def test_torch_compile_draws_like_eager() -> None:
    n_rows, n_cols = 128, 256
    backend = ml.TorchBackend()
    pm = ml.compile(dropout_of_param(P, (n_rows, n_cols)), backend, jit=True)
    rng = np.random.default_rng(12)
    w = backend.array(away_from_zero(rng, n_rows, n_cols))
    g = backend.array(rng.standard_normal((n_rows, n_cols)))
    w_np, g_np = backend.to_numpy(w).astype(np.float64), backend.to_numpy(g).astype(np.float64)

    def masks() -> list[np.ndarray]:
        backend.seed(13)
        out = [pm.evaluate({"w": w}, {})["output"] for _ in range(2)]
        outputs, grads = pm.evaluate({"w": w}, {}, {"output": g})
        keep = [
            check_dropped_or_scaled(w_np, backend.to_numpy(o).astype(np.float64), P) for o in (*out, outputs["output"])
        ]
        np.testing.assert_allclose(backend.to_numpy(grads["w"]), g_np * keep[2] / (1 - P), rtol=1e-6)
        return keep

    first = masks()
    assert abs(first[0].mean() - (1 - P)) <= Z * math.sqrt(P * (1 - P) / first[0].size)
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
    assert all(np.array_equal(a, b) for a, b in zip(first, masks()))


# -------------------------------------------------------- zoo blocks with dropout
def test_attention_dropout_is_off_in_inference_and_keeps_torch_names() -> None:
    backend = ml.NumpyBackend(dtype=ml.float64)
    shapes = {"input": [2, 5, 8]}
    plain = ml.compile(TransformerBlock(8, 2, 16), backend, shapes=shapes)
    dropped = ml.compile(TransformerBlock(8, 2, 16, dropout=0.2), backend, shapes=shapes)
    assert dropped.param_keys == plain.param_keys
    draws = [line.rsplit("# ", 1)[1] for line in dropped.source.splitlines() if "k_bernoulli(" in line]
    assert sorted(d.rsplit(".", 1)[0] for d in draws) == ["dropout", "dropout1", "dropout2", "self_attn.dropout"]
    params = plain.randomize_params(seed=0)
    x = backend.randn(2, 5, 8)
    expected = plain.evaluate(params, {"input": x})["output"]
    np.testing.assert_array_equal(dropped.evaluate(params, {"input": x}, training=False)["output"], expected)
    backend.seed(1)
    trained = dropped.evaluate(params, {"input": x})["output"]
    assert np.all(np.isfinite(trained)) and not np.allclose(trained, expected)


# ------------------------------------------------------------------------- GGML
@pytest.mark.skipif("ggml" not in ml.plugins.backends(), reason="needs mithril-ggml")
def test_ggml_runs_dropout_in_inference_and_names_it_in_training() -> None:
    backend = ml.GGMLBackend()
    pm = ml.compile(Dropout(P), backend, shapes={"input": [4, 8]}, static_inference=True)
    x = away_from_zero(np.random.default_rng(10), 4, 8).astype(np.float32)
    np.testing.assert_array_equal(pm.evaluate({}, {"input": x})["output"], x)
    model = Model()
    model |= Linear(dimension=8)(input=IOKey("input", shape=[4, 8]))
    model += Dropout(P)
    with pytest.raises(UnsupportedError, match=r"primitive 'bernoulli' in block 'dropout_0\.[a-z_0-9]+': a random"):
        ml.compile(model, backend, training=True)
