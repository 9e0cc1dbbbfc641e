"""JaxBackend(device_mesh=...): evaluate, gradients and training steps over a CPU mesh equal one device's.

Needs XLA_FLAGS=--xla_force_host_platform_device_count=8 before JAX starts (nox sets it).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import mithril as ml
from mithril.errors import ShapeMismatchError, UnknownKeyError, UnsupportedError
from mithril.models import BatchNorm2d, Conv2d, CrossEntropyLoss, Flatten, Linear, Model, Relu
from mithril.parallel import Layout, column_parallel, row_parallel

pytestmark = pytest.mark.skipif(len(jax.devices("cpu")) < 8, reason="needs 8 CPU devices (XLA_FLAGS)")

TP = Layout(column_parallel("linear_0") + row_parallel("linear_1"))
CASES = [  # (mesh, layout)
    ((8,), None),
    ((2,), None),
    ({"data": 2, "model": 4}, TP),
    ({"data": 1, "model": 2}, TP),
    ((8,), Layout(fsdp=True)),
    ({"data": 4, "model": 2}, Layout(column_parallel("linear_0") + row_parallel("linear_1"), fsdp=True)),
]


def mlp() -> Model:
    m = Model()
    m |= Linear(dimension=16)
    m += Relu()
    m += Linear(dimension=4)
    return m


def cnn() -> Model:
    m = Model()
    m |= Conv2d(in_channels=1, out_channels=4, kernel_size=3, padding=1)
    m += BatchNorm2d(num_features=4)
    m += Relu()
    m += Flatten()
    m += Linear(dimension=4)
    return m


def train(model, mesh, layout, params, batches, shapes):
    be = ml.JaxBackend(dtype=ml.float64, device_mesh=mesh)
    step = ml.compile_step(
        model,
        be,
        loss=CrossEntropyLoss(),
        optimizer=ml.optim.AdamW(lr=1e-2, clip_norm=1.0),
        shapes=shapes,
        jit=True,
        sharding=layout,
    )
    state = step.init({k: be.array(v) for k, v in params.items()})
    losses = []
    for x, y in batches:
        result = step(state, {"input": be.array(x), "target": be.array(y)})
        state = result.state
        losses.append(float(be.to_numpy(result.loss)))
    return be, step, state, losses


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((16, 8)), rng.integers(0, 4, 16)) for _ in range(4)]
    be = ml.JaxBackend(dtype=ml.float64)
    params = {
        k: be.to_numpy(v) for k, v in ml.compile(mlp(), be, shapes={"input": [16, 8]}).randomize_params(0).items()
    }
    _, _, state, losses = train(mlp(), None, None, params, batches, {"input": [16, 8]})
    return params, batches, losses, {k: be.to_numpy(v) for k, v in state.params.items()}


@pytest.mark.parametrize("mesh, layout", CASES, ids=[f"{m}-{'layout' if lay else 'dp'}" for m, lay in CASES])
def test_training_on_a_mesh_equals_one_device(reference, mesh, layout):
    params, batches, want_losses, want = reference
    be, _step, state, losses = train(mlp(), mesh, layout, params, batches, {"input": [16, 8]})
    np.testing.assert_allclose(losses, want_losses, rtol=1e-10)
    for k, v in want.items():
        np.testing.assert_allclose(be.to_numpy(state.params[k]), v, rtol=1e-10, atol=1e-13, err_msg=k)
    w = state.params["linear_0.weight"]
    spec = tuple(w.sharding.spec) if hasattr(w.sharding, "spec") else ()
    if layout is TP or (layout is not None and layout.rules):
        assert spec[:1] == ("model",)  # the layout is kept across steps
    elif layout is not None and layout.fsdp:
        assert spec[:1] == ("data",)
        m = state.optimizer["adamw.m.linear_0.weight"]
        assert tuple(m.sharding.spec)[:1] == ("data",)  # optimizer state sharded like its param


def test_evaluate_and_gradients_on_a_mesh():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 1, 4, 4))
    g = rng.standard_normal((8, 4))
    results = []
    for mesh in (None, (8,), (4,)):
        be = ml.JaxBackend(dtype=ml.float64, device_mesh=mesh)
        pm = ml.compile(cnn(), be, shapes={"input": [8, 1, 4, 4]})
        params = {
            k: be.array(v)
            for k, v in (
                results[0][2] if results else {k: be.to_numpy(v) for k, v in pm.randomize_params(0).items()}
            ).items()
        }
        out, grads, state = pm.evaluate(params, {"input": be.array(x)}, {"output": be.array(g)}, return_state=True)
        results.append(
            (
                be.to_numpy(out["output"]),
                {k: be.to_numpy(v) for k, v in grads.items()},
                {k: be.to_numpy(v) for k, v in params.items()},
                be.to_numpy(state["batchnorm2d_0.running_mean"]),
            )
        )
    for got in results[1:]:  # BatchNorm's batch statistics are global: the same as on one device
        np.testing.assert_allclose(got[0], results[0][0], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(got[3], results[0][3], rtol=1e-10, atol=1e-13)
        for k in got[1]:
            np.testing.assert_allclose(got[1][k], results[0][1][k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_checkpoint_reshards(reference, tmp_path):
    """Saved from an 8-way fsdp mesh (gathered), loaded onto a 2x4 tensor-parallel mesh and one device."""
    params, batches, want_losses, _ = reference
    be, step, state, _ = train(mlp(), (8,), Layout(fsdp=True), params, batches[:2], {"input": [16, 8]})
    ml.training.save_checkpoint(tmp_path / "ck.safetensors", state, step)
    for mesh, layout in (({"data": 2, "model": 4}, TP), (None, None)):
        be = ml.JaxBackend(dtype=ml.float64, device_mesh=mesh)
        other = ml.compile_step(
            mlp(),
            be,
            loss=CrossEntropyLoss(),
            optimizer=ml.optim.AdamW(lr=1e-2, clip_norm=1.0),
            shapes={"input": [16, 8]},
            jit=True,
            sharding=layout,
        )
        resumed = ml.training.load_checkpoint(tmp_path / "ck.safetensors", other)
        losses = []
        for x, y in batches[2:]:
            r = other(resumed, {"input": be.array(x), "target": be.array(y)})
            resumed = r.state
            losses.append(float(be.to_numpy(r.loss)))
        np.testing.assert_allclose(losses, want_losses[2:], rtol=1e-10)


def test_bad_meshes_and_layouts_are_clear_errors():
    be = ml.JaxBackend(device_mesh=(8,))
    with pytest.raises(ShapeMismatchError, match=r"batch size 12 .*not divisible by the 8 devices of mesh axis 'data'"):
        ml.compile(mlp(), be, shapes={"input": [12, 8]})
    with pytest.raises(UnknownKeyError, match="no axis 'model'"):
        ml.compile(mlp(), be, shapes={"input": [16, 8]}, sharding=TP)
    with pytest.raises(UnknownKeyError, match=r"'\*\.gamma' matches no array"):
        ml.compile(mlp(), be, shapes={"input": [16, 8]}, sharding={"*.gamma": (None,)})
    tp3 = ml.JaxBackend(device_mesh={"data": 1, "model": 3})
    with pytest.raises(ShapeMismatchError, match=r"size 16, not divisible by the 3 devices of mesh axis model"):
        ml.compile(mlp(), tp3, shapes={"input": [16, 8]}, sharding=TP)
    with pytest.raises(UnsupportedError, match="axis 'data' has size 0"):
        ml.JaxBackend(device_mesh={"data": 0})
    with pytest.raises(ml.errors.CompileError, match="needs a backend with a device mesh"):
        ml.compile(mlp(), ml.JaxBackend(), shapes={"input": [16, 8]}, sharding=TP)


def test_seed_multi_backend_block_on_cpu():
    """The quickstart's scaling line with device='cpu'; 'tpu' names the platforms that exist."""
    scaling_model = ml.compile(mlp(), ml.JaxBackend(device="cpu", device_mesh=(8,)))
    assert scaling_model.backend.mesh.shape == (8,)
    with pytest.raises(UnsupportedError, match=r"no 'tpu' platform \(platforms present: cpu"):
        ml.JaxBackend(device="tpu", device_mesh=(8,))
