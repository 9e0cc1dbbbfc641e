"""A partial last batch padded to the compiled batch size, exactly (mithril.training.padding).

Oracles: the same step on the unpadded batch (the path every other training test checks against
torch.nn), and for the MLP a NumPy cross-entropy of the real rows. Padded rows are filled with
*other* data, not copies, so a padded row that leaked into the loss or the gradients would show.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mithril as ml
from mithril.errors import RecompileWarning, UnsupportedError
from mithril.ir.graph import Graph, GraphBuilder, Value, ValueRole
from mithril.models import (
    BatchNorm2d,
    Conv2d,
    CrossEntropyLoss,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    Model,
    MSELoss,
    Relu,
)
from mithril.testing.variants import installed, variant_backend
from mithril.training.padding import ROW_WEIGHT_INPUT, refusal

TRAINABLE = [n for n in installed() if variant_backend(n, "float32").supports_training]
B, N = 16, 11  # the compiled batch, the real rows of the partial one


def mlp() -> Model:
    m = Model()
    m |= Linear(dimension=16)
    m += Relu()
    m += Linear(dimension=3)
    return m


def cnn(batchnorm: bool = False, dropout: bool = False) -> Model:
    m = Model()
    m |= Conv2d(in_channels=1, out_channels=4, kernel_size=3, padding=1)
    if batchnorm:
        m += BatchNorm2d(num_features=4)
    m += Relu()
    m += MaxPool2d(kernel_size=2)
    m += Flatten()
    if dropout:
        m += Dropout(p=0.3)
    m += Linear(dimension=3)
    return m


def mlp_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6))
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)


def cnn_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 6, 6)), rng.integers(0, 3, n)


def _step(model: Model, be: object, jit: bool = False, **kw: object) -> ml.TrainingStep:
    return ml.compile_step(
        model,
        be,  # type: ignore[arg-type]
        loss=kw.pop("loss", CrossEntropyLoss()),  # type: ignore[arg-type]
        optimizer=ml.optim.SGD(lr=1.0),
        metrics=kw.pop("metrics", ["accuracy", "top2_accuracy"]),  # type: ignore[arg-type]
        shapes=kw.pop("shapes", None),  # type: ignore[arg-type]
        jit=jit,
    )


def _jit(name: str) -> bool:
    return name == "jax"  # torch.compile takes minutes on a CPU; its padded graph is the same graph


@pytest.mark.parametrize("name", TRAINABLE)
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_padded_step_is_the_unpadded_step(name: str, kind: str) -> None:
    be = variant_backend(name, "float64")
    model, (x, y) = (mlp(), mlp_data(B)) if kind == "mlp" else (cnn(), cnn_data(B))
    step = _step(model, be, jit=_jit(name))
    assert step.padding_refusal({"input": x.shape, "target": y.shape}) is None
    state = step.init(seed=1)
    p0 = {k: be.to_numpy(v) for k, v in state.params.items()}
    with be.scope():
        real = step(state, {"input": be.array(x[:N]), "target": be.array(y[:N])})
        state = step.init({k: be.array(v) for k, v in p0.items()}, seed=1)
        padded = step(state, {"input": be.array(x), "target": be.array(y)}, rows=N)
        loss = float(be.to_numpy(real.loss))
    assert abs(float(be.to_numpy(padded.loss)) - loss) <= 1e-9 * max(1.0, abs(loss))
    for k in real.metrics:
        assert float(be.to_numpy(padded.metrics[k])) == pytest.approx(float(be.to_numpy(real.metrics[k])), abs=1e-12)
    for k, v in real.state.params.items():  # SGD(lr=1): the update is minus the gradient
        g_real, g_pad = p0[k] - be.to_numpy(v), p0[k] - be.to_numpy(padded.state.params[k])
        np.testing.assert_allclose(g_pad, g_real, rtol=1e-9, atol=1e-12, err_msg=k)
        assert np.abs(g_real).max() > 0, k  # the comparison can fail: every param moves
    if kind == "mlp":  # and the loss is the real rows' cross-entropy, computed here
        w0, b0, w1, b1 = (p0[f"linear_{i}.{t}"] for i in (0, 1) for t in ("weight", "bias"))
        z = np.maximum(x[:N] @ w0.T + b0, 0) @ w1.T + b1
        logp = z - z.max(1, keepdims=True) - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True))
        assert loss == pytest.approx(-logp[np.arange(N), y[:N]].mean(), rel=1e-12)
    assert step.compile_count == 2  # the unpadded shape and the padded (weighted) one


@pytest.mark.parametrize("name", TRAINABLE)
def test_padded_evaluate_and_mse(name: str) -> None:
    be = variant_backend(name, "float64")
    x, _ = mlp_data(B)
    t = np.random.default_rng(3).standard_normal((B, 3))
    step = _step(mlp(), be, loss=MSELoss(), metrics=["mae", "mse"], shapes={"input": [None, 6], "target": [None, 3]})
    state = step.init(seed=0)
    with be.scope():
        real = step.evaluate(state, {"input": be.array(x[:N]), "target": be.array(t[:N])})
        padded = step.evaluate(state, {"input": be.array(x), "target": be.array(t)}, rows=N)
        full = step.evaluate(state, {"input": be.array(x), "target": be.array(t)}, rows=B)
        plain = step.evaluate(state, {"input": be.array(x), "target": be.array(t)})
    for k in ("loss", "mae", "mse"):
        assert float(be.to_numpy(padded[k])) == pytest.approx(float(be.to_numpy(real[k])), rel=1e-12)
        assert float(be.to_numpy(full[k])) == pytest.approx(float(be.to_numpy(plain[k])), rel=1e-12)


def test_examples_that_interact_are_refused() -> None:
    be = ml.NumpyBackend()
    shapes = {"input": (B, 1, 6, 6), "target": (B,)}
    bn = _step(cnn(batchnorm=True), be)
    why = bn.padding_refusal(shapes)
    assert why is not None and "batchnorm" in why.lower()
    assert bn.padding_refusal(shapes, training=False) is None  # inference mode uses the running statistics
    x, y = cnn_data(B)
    with pytest.raises(UnsupportedError, match="cannot be padded exactly"):
        bn(bn.init(seed=0), {"input": be.array(x), "target": be.array(y)}, rows=N)
    why = _step(cnn(dropout=True), be).padding_refusal(shapes)
    assert why is not None and "random" in why


def _graph(n: int, divisor: float | None) -> Graph:
    """loss = sum(x * w) / divisor (a batch-size constant) or mean(x * w)."""
    g = Graph()
    x = g.inputs["x"] = Value(ValueRole.INPUT, name="x", kind="float", shape=(n, 4))
    w = g.params["w"] = Value(ValueRole.PARAM, name="w", kind="float", shape=(4,))
    b = GraphBuilder(g, where="toy")
    y = b.emit("mul", x, w)
    if divisor is None:
        g.outputs["loss"] = b.emit("mean", y, axis=None, keepdims=False)
    else:
        g.outputs["loss"] = b.emit("div", b.emit("sum", y, axis=None, keepdims=False), b.const(divisor, "float"))
    return g


def test_a_constant_of_the_batch_size_is_refused() -> None:
    assert refusal(lambda n: _graph(n, None), B) is None
    assert refusal(lambda n: _graph(n, 7.0), B) is None  # a constant of its own: exact
    why = refusal(lambda n: _graph(n, float(n)), B)  # sum / batch size, baked in: not exact once padded
    assert why is not None and "constant depends on the batch size" in why


def test_batch_axis_reductions_and_reshapes_are_refused() -> None:
    def flat(n: int) -> Graph:
        g = Graph()
        x = g.inputs["x"] = Value(ValueRole.INPUT, name="x", kind="float", shape=(n, 4))
        b = GraphBuilder(g, where="toy")
        g.outputs["loss"] = b.emit("max", b.emit("reshape", x, shape=(-1,)), axis=None, keepdims=False)
        return g

    why = refusal(flat, B)
    assert why is not None and "reshape" in why


def _fit(be: object, pad: bool | None, epochs: int = 2, model: Model | None = None, x=None, y=None):  # type: ignore[no-untyped-def]
    if x is None:
        x, y = cnn_data(75, seed=2)
    trainer = ml.Trainer(
        model or cnn(),
        be,  # type: ignore[arg-type]
        loss=CrossEntropyLoss(),
        optimizer=ml.optim.Adam(1e-2),
        metrics=["accuracy"],
        jit=True,
        seed=4,
    )
    history = trainer.fit(x, y, epochs=epochs, batch_size=32, pad_remainder=pad, verbose=False)
    return trainer, history


@pytest.mark.skipif("jax" not in TRAINABLE, reason="needs a jit backend (JAX compiles in seconds)")
def test_fit_pads_on_a_jit_backend_and_compiles_once() -> None:
    be = variant_backend("jax", "float64")
    padded, h_pad = _fit(be, None)
    assert padded.step.compile_count == 1  # 75 = 32 + 32 + 11: one shape for all three
    plain, h_plain = _fit(be, False)
    assert plain.step.compile_count == 2
    for k in ("loss", "accuracy"):
        np.testing.assert_allclose(h_pad[k], h_plain[k], rtol=1e-9)
    for k, v in plain.params_numpy().items():
        np.testing.assert_allclose(padded.params_numpy()[k], v, rtol=1e-8, atol=1e-10, err_msg=k)
    x, y = cnn_data(50, seed=5)
    scores = padded.evaluate(x, y, batch_size=32)
    assert padded.step.compile_count == 2  # and one evaluation step, 50 = 32 + 18 padded
    for k, v in plain.evaluate(x, y, batch_size=32).items():
        assert scores[k] == pytest.approx(v, rel=1e-9)


@pytest.mark.skipif("jax" not in TRAINABLE, reason="needs a jit backend (JAX compiles in seconds)")
def test_fit_falls_back_without_a_warning_storm() -> None:
    be = variant_backend("jax", "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default: refused quietly
        trainer, _ = _fit(be, None, model=cnn(batchnorm=True))
    assert trainer.step.compile_count == 2  # the last batch compiled for its own shape
    with pytest.warns(RecompileWarning, match="padding would not be exact") as record:
        trainer, _ = _fit(be, True, epochs=3, model=cnn(batchnorm=True))
    assert len([w for w in record if issubclass(w.category, RecompileWarning)]) == 1


def test_padding_is_off_without_jit_unless_asked() -> None:
    be = ml.NumpyBackend(dtype=ml.float64)
    x, y = cnn_data(75, seed=2)
    for pad, count in ((None, 2), (True, 1), (False, 2)):
        trainer = ml.Trainer(cnn(), be, loss=CrossEntropyLoss(), optimizer=ml.optim.SGD(0.1), seed=0)
        trainer.fit(x, y, epochs=1, batch_size=32, pad_remainder=pad, verbose=False)
        assert trainer.step.compile_count == count, pad
    assert ROW_WEIGHT_INPUT not in trainer.step.input_keys  # not a data input of the step


@pytest.mark.skipif("jax" not in TRAINABLE, reason="JAX backend not installed")
def test_jax_init_is_reproducible_and_well_distributed() -> None:
    from scipy import stats

    be = ml.JaxBackend()
    step = _step(cnn(), be, shapes={"input": [None, 1, 6, 6], "target": [None]})
    a = {k: be.to_numpy(v) for k, v in step.init(seed=3).params.items()}
    b = {k: be.to_numpy(v) for k, v in step.init(seed=3).params.items()}
    c = {k: be.to_numpy(v) for k, v in step.init(seed=4).params.items()}
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        assert not np.array_equal(a[k], c[k])
    be.seed(0)
    n, u = be.to_numpy(be.randn(20_000)), be.to_numpy(be.uniform(-2.0, 3.0, (20_000,)))
    assert stats.kstest(n, "norm").pvalue > 1e-3
    assert stats.kstest(u, "uniform", args=(-2.0, 5.0)).pvalue > 1e-3
    assert u.min() >= -2.0 and u.max() < 3.0
