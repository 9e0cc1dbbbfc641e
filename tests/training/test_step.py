"""The compiled training step, fit, checkpoints: against torch.nn + torch.optim, and bad input.

Oracles: a hand-written torch.nn + torch.optim loop from the same initial weights and
batches (float64); the uninterrupted run for resumed ones; the full batch for
accumulated micro-batches.
"""

from __future__ import annotations

import numpy as np
import pytest

import mithril as ml
from mithril.errors import (
    CheckpointError,
    MissingInputError,
    ModelBuildError,
    ShapeMismatchError,
    StateNotReturnedWarning,
    TrainingError,
    UnknownKeyError,
    UnsupportedError,
)
from mithril.models import BatchNorm2d, Conv2d, CrossEntropyLoss, Dropout, Flatten, Linear, Model, MSELoss, Relu
from mithril.testing.variants import installed, variant_backend

torch = pytest.importorskip("torch")
BACKENDS = installed()


def mlp() -> Model:
    m = Model()
    m |= Linear(dimension=16)
    m += Relu()
    m += Linear(dimension=3)
    return m


def cnn(dropout: bool = False) -> Model:
    m = Model()
    m |= Conv2d(in_channels=1, out_channels=3, kernel_size=3, padding=1)
    m += BatchNorm2d(num_features=3)
    m += Relu()
    m += Flatten()
    if dropout:
        m += Dropout(p=0.3)
    m += Linear(dimension=3)
    return m


def data(n: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6))
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)


def torch_mlp(params: dict[str, np.ndarray]) -> torch.nn.Module:
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).double()
    with torch.no_grad():
        for i, layer in ((0, net[0]), (1, net[2])):
            layer.weight.copy_(torch.tensor(params[f"linear_{i}.weight"]))
            layer.bias.copy_(torch.tensor(params[f"linear_{i}.bias"]))
    return net


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_fit_loss_curve_matches_torch(backend_name):
    """fit's per-batch losses and final weights equal a torch.nn + torch.optim loop's (float64)."""
    be = variant_backend(backend_name, "float64")
    x, y = data()
    rates = ml.training.LearningRateLogger()
    losses: list[float] = []

    class Record(ml.training.Callback):
        def on_batch_end(self, step, logs):
            losses.append(logs["loss"])

    opt = ml.optim.AdamW(
        lr=ml.schedules.StepDecay(0.02, step_size=4, gamma=0.5),
        weight_decay=0.05,
        groups=[ml.optim.ParamGroup("*.bias", weight_decay=0.0)],
    )
    trainer = ml.Trainer(mlp(), be, loss=CrossEntropyLoss(), optimizer=opt, seed=3)
    trainer.fit(x, y, epochs=2, batch_size=24, shuffle=False, verbose=False, callbacks=[rates, Record()])
    p0 = ml.Trainer(mlp(), be, loss=CrossEntropyLoss(), optimizer=opt, seed=3, shapes={"input": [None, 6]})
    init = p0.params_numpy()

    net = torch_mlp(init)
    decay = [p for n, p in net.named_parameters() if n.endswith("weight")]
    no_decay = [p for n, p in net.named_parameters() if n.endswith("bias")]
    topt = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=0.02, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.StepLR(topt, step_size=4, gamma=0.5)
    expected, expected_lr = [], []
    for _ in range(2):
        for s in range(0, len(x), 24):
            topt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(torch.tensor(x[s : s + 24])), torch.tensor(y[s : s + 24]))
            loss.backward()
            expected_lr.append(sched.get_last_lr()[0])
            topt.step()
            sched.step()
            expected.append(loss.item())
    np.testing.assert_allclose(losses, expected, rtol=1e-10)
    np.testing.assert_allclose([r for _, r in rates.rates], expected_lr, rtol=1e-12)
    np.testing.assert_allclose(
        trainer.params_numpy()["linear_0.weight"], net[0].weight.detach().numpy(), rtol=1e-9, atol=1e-12
    )


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_batchnorm_state_and_accuracy_follow_torch(backend_name):
    """Running statistics advance every step (the step updates state itself) as torch's BatchNorm2d."""
    be = variant_backend(backend_name, "float64")
    step = ml.compile_step(
        cnn(),
        be,
        loss=CrossEntropyLoss(),
        optimizer=ml.optim.SGD(lr=0.1, momentum=0.9),
        shapes={"input": [8, 1, 4, 4]},
        metrics=["accuracy"],
    )
    state = step.init(seed=1)
    init = {k: be.to_numpy(v) for k, v in state.params.items()}
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((3, 8, 1, 4, 4))
    ys = rng.integers(0, 3, (3, 8))
    conv = torch.nn.Conv2d(1, 3, 3, padding=1).double()
    bn = torch.nn.BatchNorm2d(3).double()
    lin = torch.nn.Linear(48, 3).double()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(init["conv2d_0.weight"]))
        conv.bias.copy_(torch.tensor(init["conv2d_0.bias"]))
        bn.weight.copy_(torch.tensor(init["batchnorm2d_0.weight"]))
        bn.bias.copy_(torch.tensor(init["batchnorm2d_0.bias"]))
        lin.weight.copy_(torch.tensor(init["linear_0.weight"]))
        lin.bias.copy_(torch.tensor(init["linear_0.bias"]))
    net = torch.nn.Sequential(conv, bn, torch.nn.ReLU(), torch.nn.Flatten(), lin)
    topt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for xb, yb in zip(xs, ys):
        result = step(state, {"input": be.array(xb), "target": be.array(yb)})
        state = result.state
        topt.zero_grad()
        out = net(torch.tensor(xb))
        loss = torch.nn.functional.cross_entropy(out, torch.tensor(yb))
        loss.backward()
        topt.step()
        acc = (out.argmax(1) == torch.tensor(yb)).double().mean().item()
        assert float(be.to_numpy(result.loss)) == pytest.approx(loss.item(), rel=1e-10)
        assert float(be.to_numpy(result.metrics["accuracy"])) == pytest.approx(acc)
    np.testing.assert_allclose(
        be.to_numpy(state.params["batchnorm2d_0.running_mean"]), bn.running_mean.numpy(), rtol=1e-10
    )
    np.testing.assert_allclose(
        be.to_numpy(state.params["batchnorm2d_0.running_var"]), bn.running_var.numpy(), rtol=1e-10
    )
    assert state.step == 3 and int(be.to_numpy(state.optimizer["sgd.step"])) == 3
    net.eval()
    with torch.no_grad():
        want = net(torch.tensor(xs[0])).numpy()
    np.testing.assert_allclose(
        be.to_numpy(step.predict(state, {"input": be.array(xs[0])})["output"]), want, rtol=1e-9, atol=1e-12
    )
    scores = step.evaluate(state, {"input": be.array(xs[0]), "target": be.array(ys[0])})
    assert float(be.to_numpy(scores["loss"])) == pytest.approx(
        torch.nn.functional.cross_entropy(torch.tensor(want), torch.tensor(ys[0])).item(), rel=1e-9
    )


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_resume_from_checkpoint_is_bit_identical(backend_name, tmp_path):
    """3 steps, save, load, 3 more steps == 6 uninterrupted steps (Dropout draws included)."""
    be = variant_backend(backend_name, "float32")
    rng = np.random.default_rng(2)
    batches = [
        {"input": rng.standard_normal((4, 1, 4, 4)).astype(np.float32), "target": rng.integers(0, 3, 4)}
        for _ in range(6)
    ]
    step = ml.compile_step(
        cnn(dropout=True), be, loss=CrossEntropyLoss(), optimizer=ml.optim.Adam(lr=1e-2), shapes={"input": [4, 1, 4, 4]}
    )

    def run(state, part):
        for b in part:
            state = step(state, {k: be.array(v) for k, v in b.items()}).state
        return state

    straight = run(step.init(seed=5), batches)
    half = run(step.init(seed=5), batches[:3])
    ml.training.save_checkpoint(tmp_path / "half.safetensors", half, step)
    resumed = run(ml.training.load_checkpoint(tmp_path / "half.safetensors", step), batches[3:])
    assert resumed.step == straight.step == 6
    for k in straight.params:
        np.testing.assert_array_equal(be.to_numpy(resumed.params[k]), be.to_numpy(straight.params[k]), err_msg=k)
    for k in straight.optimizer:
        np.testing.assert_array_equal(be.to_numpy(resumed.optimizer[k]), be.to_numpy(straight.optimizer[k]), err_msg=k)


def test_checkpoint_loads_on_every_backend(tmp_path):
    """Written on one backend, a checkpoint continues on each other to float64 round-off."""
    x, y = data(32)
    batch = {"input": x, "target": y}
    results = {}
    for name in BACKENDS:
        be = variant_backend(name, "float64")
        step = ml.compile_step(
            mlp(),
            be,
            loss=CrossEntropyLoss(),
            optimizer=ml.optim.RMSprop(lr=1e-2, momentum=0.5),
            shapes={"input": [32, 6]},
        )
        if not results:
            state = step.init(seed=0)
            for _ in range(2):
                state = step(state, {k: be.array(v) for k, v in batch.items()}).state
            ml.training.save_checkpoint(tmp_path / "ck.safetensors", state, step)
        state = ml.training.load_checkpoint(tmp_path / "ck.safetensors", step)
        assert state.step == 2
        result = step(state, {k: be.array(v) for k, v in batch.items()})
        results[name] = (float(be.to_numpy(result.loss)), be.to_numpy(result.state.params["linear_1.weight"]))
    first = next(iter(results.values()))
    for name, (loss, w) in results.items():
        assert loss == pytest.approx(first[0], rel=1e-12), name
        np.testing.assert_allclose(w, first[1], rtol=1e-11, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_accumulation_equals_the_full_batch(backend_name):
    be = variant_backend(backend_name, "float64")
    x, y = data(24)
    finals = []
    params = None
    for k in (1, 3):
        step = ml.compile_step(
            mlp(),
            be,
            loss=CrossEntropyLoss(),
            optimizer=ml.optim.Adam(lr=1e-2, weight_decay=0.1),
            shapes={"input": [None, 6]},
            accumulate=k,
            metrics=["accuracy"],
        )
        state = step.init(params, seed=0)
        params = params or {n: be.array(be.to_numpy(v)) for n, v in state.params.items()}
        for _ in range(3):
            result = step(state, {"input": be.array(x), "target": be.array(y)})
            state = result.state
        finals.append((float(be.to_numpy(result.loss)), be.to_numpy(state.params["linear_0.weight"])))
    assert finals[1][0] == pytest.approx(finals[0][0], rel=1e-12)
    np.testing.assert_allclose(finals[1][1], finals[0][1], rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("jit_backend", [b for b in ("torch", "jax") if b in BACKENDS])
def test_jit_step_is_one_function_and_matches_eager(jit_backend):
    be = variant_backend(jit_backend, "float64")
    x, y = data(16)
    losses = {}
    for jit in (False, True):
        step = ml.compile_step(
            mlp(),
            be,
            loss=CrossEntropyLoss(),
            optimizer=ml.optim.AdamW(lr=1e-2, clip_norm=0.5),
            shapes={"input": [16, 6]},
            jit=jit,
        )
        state = step.init(seed=0)
        out = []
        for _ in range(3):
            result = step(state, {"input": be.array(x), "target": be.array(y)})
            state = result.state
            out.append(float(be.to_numpy(result.loss)))
        losses[jit] = out
        assert step.compile_count == 1
        src = step.source
        assert src.count("def run(") == 1 and "adamw.m.linear_0.weight" in src and "k_linear" in src
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-10)


def test_model_is_reusable_and_loss_pruned_for_inference():
    """The same model trains in two steps and compiles on its own; inference needs no target."""
    be = variant_backend(BACKENDS[0], "float32")
    model = mlp()
    a = ml.compile_step(model, be, loss=CrossEntropyLoss(), optimizer=ml.optim.SGD(lr=0.1), shapes={"input": [4, 6]})
    b = ml.compile_step(model, be, loss=MSELoss(), optimizer=ml.optim.SGD(lr=0.1), shapes={"input": [4, 6]})
    pm = ml.compile(model, be, shapes={"input": [4, 6]})
    state = a.init(seed=0)
    assert set(state.params) == set(pm.param_keys) == set(b.init(seed=0).params)
    assert a.inference_model.input_keys == ("input",)
    out = a.predict(state, {"input": be.randn(4, 6)})
    assert set(out) == {"output"}


def test_bad_input_is_a_clear_error(tmp_path):
    be = variant_backend(BACKENDS[0], "float32")
    step = ml.compile_step(mlp(), be, loss=MSELoss(), optimizer=ml.optim.SGD(lr=0.1), shapes={"input": [4, 6]})
    state = step.init(seed=0)
    with pytest.raises(ShapeMismatchError, match=r"\[4, 3\].*\[4\]|\[4\].*\[4, 3\]"):
        step(state, {"input": be.randn(4, 6), "target": be.randn(4)})
    with pytest.raises(MissingInputError, match="target"):
        step(state, {"input": be.randn(4, 6)})
    with pytest.raises(UnknownKeyError, match="labels"):
        step(state, {"input": be.randn(4, 6), "target": be.randn(4, 3), "labels": be.randn(4)})
    with pytest.raises(ModelBuildError, match=r"'\*\.gamma'.*linear_0.weight"):
        ml.compile_step(
            mlp(),
            be,
            loss=MSELoss(),
            shapes={"input": [4, 6]},
            optimizer=ml.optim.AdamW(groups=[ml.optim.ParamGroup("*.gamma", weight_decay=0.0)]),
        )
    other = ml.compile_step(
        cnn(), be, loss=CrossEntropyLoss(), optimizer=ml.optim.SGD(lr=0.1), shapes={"input": [4, 1, 4, 4]}
    )
    ml.training.save_checkpoint(tmp_path / "cnn.safetensors", other.init(seed=0), other)
    with pytest.raises(CheckpointError, match="another model"):
        ml.training.load_checkpoint(tmp_path / "cnn.safetensors", step)
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="cannot be read"):
        ml.training.load_checkpoint(tmp_path / "broken.safetensors", step)
    x, y = data(16)
    diverging = ml.Trainer(mlp(), be, loss=CrossEntropyLoss(), optimizer=ml.optim.SGD(lr=1e6))
    with pytest.raises(TrainingError, match=r"at step \d+"):
        diverging.fit(x * 1e6, y, epochs=3, batch_size=4, verbose=False)
    with pytest.raises(TrainingError, match="batch_size"):
        diverging.fit(x, y, batch_size=0)


def test_ggml_is_inference_only():
    if "ggml" not in ml.plugins.backends():
        pytest.skip("mithril-ggml is not installed")
    with pytest.raises(UnsupportedError, match="inference only"):
        ml.compile_step(
            mlp(), ml.GGMLBackend(), loss=MSELoss(), optimizer=ml.optim.SGD(lr=0.1), shapes={"input": [4, 6]}
        )


def test_state_not_returned_warns():
    be = variant_backend(BACKENDS[0], "float32")
    pm = ml.compile(cnn(), be, shapes={"input": [4, 1, 4, 4]})
    params = pm.randomize_params(seed=0)
    pm.evaluate(params, {"input": be.randn(4, 1, 4, 4)}, training=False)
    pm.evaluate(params, {"input": be.randn(4, 1, 4, 4)}, return_state=True)
    with pytest.warns(StateNotReturnedWarning, match="return_state=True"):
        pm.evaluate(params, {"input": be.randn(4, 1, 4, 4)})


@pytest.mark.parametrize("backend_name", [b for b in ("torch", "jax") if b in BACKENDS])
@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_keeps_float32_master_weights(backend_name, precision):
    """Forward/backward in half precision, float32 update: the curve follows the float32 one."""
    be = variant_backend(backend_name, "float32")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 1, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    curves, steps = {}, {}
    for prec in (None, getattr(ml, precision)):
        step = ml.compile_step(
            cnn(),
            be,
            loss=CrossEntropyLoss(),
            optimizer=ml.optim.AdamW(lr=1e-2),
            shapes={"input": [8, 1, 4, 4]},
            precision=prec,
        )
        state = step.init(seed=2)
        losses = []
        for _ in range(6):
            r = step(state, {"input": be.array(x), "target": be.array(y)})
            state = r.state
            losses.append(float(be.to_numpy(r.loss)))
        curves[prec], steps[prec] = losses, (step, state)
    half = getattr(ml, precision)
    np.testing.assert_allclose(curves[half], curves[None], rtol=3e-2)
    step, state = steps[half]
    assert all(be.dtype_of(v) is ml.float32 for v in state.params.values() if be.kind_of(v) == "float")
    assert step.loss_scale == (1024.0 if precision == "float16" else 1.0)
    assert curves[half][-1] < curves[half][0]


def test_mixed_precision_bad_options():
    be64 = variant_backend(BACKENDS[0], "float64")
    with pytest.raises(ml.errors.CompileError, match="float32 backend"):
        ml.compile_step(
            mlp(), be64, loss=MSELoss(), optimizer=ml.optim.SGD(lr=0.1), precision=ml.bfloat16, shapes={"input": [4, 6]}
        )
    be = variant_backend(BACKENDS[0], "float32")
    with pytest.raises(ml.errors.CompileError, match="loss_scale needs precision"):
        ml.compile_step(
            mlp(), be, loss=MSELoss(), optimizer=ml.optim.SGD(lr=0.1), loss_scale=128.0, shapes={"input": [4, 6]}
        )
    if "numpy" in BACKENDS:
        with pytest.raises(UnsupportedError, match="cannot compute in bfloat16"):
            ml.compile_step(
                mlp(),
                ml.NumpyBackend(),
                loss=MSELoss(),
                optimizer=ml.optim.SGD(lr=0.1),
                precision=ml.bfloat16,
                shapes={"input": [4, 6]},
            )
