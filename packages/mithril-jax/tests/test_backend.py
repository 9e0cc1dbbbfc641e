"""JaxBackend itself: plugin, devices, dtypes, PRNG, scoped x64, accept, jit."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mithril_jax
from mithril.backend import Backend
from mithril.dtypes import DType
from mithril.errors import EvaluationError, UnsupportedError
from mithril.primitives import CORE_PRIMITIVES
from mithril_jax import JaxBackend, plugin

X64_GLOBALLY = bool(jax.config.read("jax_enable_x64"))
needs_x64_off = pytest.mark.skipif(X64_GLOBALLY, reason="jax_enable_x64 is on for this process")


# ------------------------------------------------------------------ plugin
def test_plugin_registers_the_backend_class():
    assert plugin.MITHRIL_PLUGIN_API == 1
    seen: list[tuple[object, object]] = []
    plugin.mithril_register_backends(register=lambda ref, name=None: seen.append((ref, name)))
    assert seen == [("mithril_jax.backend:JaxBackend", "jax")]  # lazy: imported on first use
    module, _, attr = seen[0][0].partition(":")
    assert getattr(importlib.import_module(module), attr) is JaxBackend
    assert JaxBackend.name == "jax" and JaxBackend.distribution == "mithril-jax"
    assert JaxBackend.supports_jit and issubclass(JaxBackend, Backend)


def test_plugin_loads_through_a_plugin_manager():
    from mithril.plugins.manager import MithrilPluginManager

    pm = MithrilPluginManager()
    if "jax" not in pm.backends():  # not installed as a distribution: register in-process
        pm.register(plugin, name="mithril_jax_test")
    assert pm.backends()["jax"] is JaxBackend


def test_every_core_primitive_has_a_kernel():
    b = JaxBackend()
    assert set(CORE_PRIMITIVES) <= set(b.core_kernels())
    assert set(CORE_PRIMITIVES) <= set(b.kernels)


def test_version():
    assert mithril_jax.__version__ == "0.1.0"


# ----------------------------------------------------------------- devices
def test_cpu_device_resolves():
    for spec in ("cpu", "cpu:0", "CPU"):
        b = JaxBackend(device=spec)
        assert b.jax_device == jax.devices("cpu")[0]
        assert b.randn(2).devices() == {b.jax_device}
        assert b.array([1.0]).devices() == {b.jax_device}


@pytest.mark.parametrize("platform", ["gpu", "tpu"])
def test_missing_platform_is_a_clear_error(platform):
    try:
        jax.devices(platform)
    except RuntimeError:
        pass
    else:
        pytest.skip(f"this machine has a {platform}")
    with pytest.raises(UnsupportedError, match=f"{platform!r} is not available.*platforms present: .*cpu"):
        JaxBackend(device=platform)


@pytest.mark.parametrize(
    "spec,match",
    [
        ("cpu:99", "does not exist; JAX sees"),
        ("quantum", "unknown device"),
        ("cpu:x", "bad device index"),
    ],
)
def test_bad_device_strings(spec, match):
    with pytest.raises(UnsupportedError, match=match):
        JaxBackend(device=spec)


def test_device_mesh_larger_than_the_devices_is_an_error():
    with pytest.raises(UnsupportedError, match=r"needs 4096 devices, but JAX sees \d+ cpu device"):
        JaxBackend(device="cpu", device_mesh=(4096,))


@pytest.mark.parametrize("dtype", [DType.int32, DType.bool])
def test_non_float_dtype_is_rejected(dtype):
    with pytest.raises(UnsupportedError):
        JaxBackend(dtype=dtype)


# ------------------------------------------------------------------ random
@pytest.mark.parametrize("dtype", [DType.float16, DType.bfloat16, DType.float32, DType.float64])
def test_seed_makes_draws_reproducible(dtype):
    b = JaxBackend(dtype=dtype)
    b.seed(7)
    first = [b.to_numpy(b.randn(32, 20)), b.to_numpy(b.rand(5)), b.to_numpy(b.uniform(-2, 3, (4,)))]
    b.seed(7)
    again = [b.to_numpy(b.randn(32, 20)), b.to_numpy(b.rand(5)), b.to_numpy(b.uniform(-2, 3, (4,)))]
    for a, c in zip(first, again):
        np.testing.assert_array_equal(a, c)
    assert first[0].shape == (32, 20) and b.dtype_of(b.randn(2)) is dtype


def test_each_draw_splits_the_key():
    b = JaxBackend()
    b.seed(0)
    a, c = b.to_numpy(b.randn(100)), b.to_numpy(b.randn(100))
    assert not np.array_equal(a, c)
    b.seed(1)
    assert not np.array_equal(a, b.to_numpy(b.randn(100)))


def test_two_unseeded_backends_differ():
    a, c = JaxBackend(), JaxBackend()
    assert not np.array_equal(a.to_numpy(a.randn(50)), c.to_numpy(c.randn(50)))


def test_random_ranges_and_shapes():
    b = JaxBackend()
    b.seed(3)
    u = b.to_numpy(b.rand(10_000))
    assert u.min() >= 0.0 and u.max() < 1.0
    v = b.to_numpy(b.uniform(-2.0, 5.0, (10_000,)))
    assert v.min() >= -2.0 and v.max() < 5.0
    n = b.to_numpy(b.randn(10_000))
    assert abs(n.mean()) < 0.05 and abs(n.std() - 1) < 0.05
    assert b.randn((2, 3)).shape == (2, 3)


@pytest.mark.parametrize("seed", [0, 2**32 - 1, 2**32, 2**40 + 5, -1])
def test_any_int_seed_works(seed):
    b = JaxBackend(dtype=DType.float64)
    b.seed(seed)
    x = b.to_numpy(b.randn(3))
    b.seed(seed)
    np.testing.assert_array_equal(x, b.to_numpy(b.randn(3)))


# --------------------------------------------------------------- x64 scope
@needs_x64_off
def test_float64_backend_leaves_user_code_in_32_bits():
    b = JaxBackend(dtype=DType.float64)
    x = b.randn(4, 3)
    y = b.array(np.arange(12.0).reshape(3, 4))
    z = b.matmul(x, y)
    f = b.jit(lambda d: {"s": d["a"] @ d["b"]}, what="evaluate")
    assert f({"a": x, "b": y})["s"].dtype == jnp.float64
    assert z.dtype == jnp.float64 and b.mean(z).dtype == jnp.float64
    assert b.kernel("cast")(z, kind="int").dtype == jnp.int64
    # ... and user code is exactly as configured: 32-bit defaults
    assert jnp.ones(3).dtype == jnp.float32
    assert jnp.arange(3).dtype == jnp.int32
    assert not jax.config.read("jax_enable_x64")


def test_float64_kernels_have_float64_precision():
    b = JaxBackend(dtype=DType.float64)
    third = b.array(np.full((1000,), 1.0 / 3.0))
    total = b.to_numpy(b.sum(third))
    assert total.dtype == np.float64
    assert abs(float(total) - 1000.0 / 3.0) < 1e-11
    f = b.jit(lambda d: {"y": jnp.exp(d["x"]) - 1.0}, what="evaluate")
    tiny = b.to_numpy(f({"x": b.array([1e-10])})["y"])
    assert abs(tiny[0] - 1e-10) < 1e-15  # float32 gives 0 or 1.19e-7


@needs_x64_off
def test_scope_keeps_user_arithmetic_in_float64():
    b = JaxBackend(dtype=DType.float64)
    x = b.ones(3)
    with b.scope():
        assert (x * 2.0).dtype == jnp.float64
    with pytest.warns(UserWarning, match="truncated to dtype float32"):
        assert (x * 2.0).dtype == jnp.float32  # JAX truncates outside the scope, with a warning


@needs_x64_off
def test_float32_backend_never_enables_x64():
    b = JaxBackend(dtype=DType.float32)
    assert b.kernel("cast")(b.ones(2), kind="int").dtype == jnp.int32
    assert b.array([1, 2]).dtype == jnp.int32
    assert b.kernel("argmax")(b.randn(3, 4), axis=(-1,), keepdims=False).dtype == jnp.int32
    with pytest.raises(UnsupportedError, match="float64"):
        b.array([1.0], dtype=DType.float64)


def test_lower_runs_the_executable_in_scope(monkeypatch):
    seen: dict[str, object] = {}

    class FakeExecutable:
        source = "generated"
        extra = 42

        def run(self, params, inputs, cotangents):
            seen["x64_at_run"] = bool(jax.config.read("jax_enable_x64"))
            return {}, {}, {}

    def fake_lower(self, graph, **kwargs):
        seen["x64_at_lower"] = bool(jax.config.read("jax_enable_x64"))
        seen["kwargs"] = kwargs
        return FakeExecutable()

    monkeypatch.setattr(Backend, "lower", fake_lower)
    exe = JaxBackend(dtype=DType.float64).lower(object(), jit=True, wrt=())
    assert exe.source == "generated" and exe.extra == 42
    assert exe.run({}, {}, {}) == ({}, {}, {})
    assert seen == {"x64_at_lower": True, "x64_at_run": True, "kwargs": {"jit": True, "wrt": ()}}


# ------------------------------------------------------------- array rules
@pytest.mark.parametrize("dtype", [DType.float16, DType.bfloat16, DType.float32, DType.float64])
def test_array_gives_floats_the_backend_dtype(dtype):
    b = JaxBackend(dtype=dtype)
    for data in ([1.5, 2.5], np.array([1.5, 2.5], dtype=np.float64), np.float32(1.5), 2.0):
        assert b.dtype_of(b.array(data)) is dtype
    assert b.dtype_of(b.array(True)) is DType.bool
    assert b.dtype_of(b.array([1, 2])).kind == "int"
    assert b.dtype_of(b.array([1, 2], dtype=DType.float32)) is DType.float32
    for make in (b.zeros, b.ones):
        assert b.dtype_of(make(2, 3)) is dtype and make(2, 3).shape == (2, 3)
    assert b.dtype_of(b.full((2,), 3.0)) is dtype
    assert b.dtype_of(b.zeros(2, dtype=DType.bool)) is DType.bool


def test_array_converts_from_other_arrays():
    torch = pytest.importorskip("torch")
    b = JaxBackend()
    np.testing.assert_array_equal(b.to_numpy(b.array(torch.arange(3.0))), [0.0, 1.0, 2.0])
    b64 = JaxBackend(dtype=DType.float64)
    x64 = b64.array([1.0 / 3.0])
    x32 = b.array(x64)
    assert x32.dtype == jnp.float32 and abs(float(b.to_numpy(x32)[0]) - 1 / 3) < 1e-7
    assert b64.to_numpy(b64.array(b.array([0.5]))).dtype == np.float64


def test_array_rejects_unsupported_data():
    with pytest.raises(UnsupportedError, match="complex"):
        JaxBackend().array(np.array([1 + 2j]))


def test_to_numpy_is_a_writable_copy():
    b = JaxBackend(dtype=DType.float64)
    x = b.ones(3)
    n = b.to_numpy(x)
    assert n.dtype == np.float64
    n[0] = 5.0
    assert float(b.to_numpy(x)[0]) == 1.0


def test_shape_and_dtype_of():
    b = JaxBackend()
    x = b.zeros(2, 3)
    assert b.shape_of(x) == (2, 3) and b.dtype_of(x) is DType.float32 and b.kind_of(x) == "float"
    assert b.native_dtype("float") == jnp.float32
    assert b.native_dtype("bool") == jnp.bool_
    with pytest.raises(UnsupportedError):
        b.dtype_of(jnp.zeros(2, jnp.uint8))


# ------------------------------------------------------------------ accept
def test_accept_passes_backend_arrays_through():
    b = JaxBackend()
    x = b.randn(2)
    assert b.accept(x, "input") is x
    i = b.array([1, 2])
    assert b.accept(i, "indices") is i
    assert b.is_array(x) and not b.is_array(np.ones(2))


def test_accept_rejects_foreign_arrays_by_name():
    b = JaxBackend()
    with pytest.raises(EvaluationError, match=r"input: expected a jax.Array .*numpy.ndarray.*backend.array"):
        b.accept(np.ones(2, dtype=np.float32), "input")


@pytest.mark.parametrize("dtype", [DType.float16, DType.bfloat16, DType.float64])
def test_accept_rejects_another_float_dtype_by_name(dtype):
    b = JaxBackend(dtype=DType.float32)
    other = JaxBackend(dtype=dtype).ones(2)
    with pytest.raises(EvaluationError, match=rf"params\['w'\]: got a {dtype.value} array.*computes in float32"):
        b.accept(other, "params['w']")


def test_accept_rejects_unsupported_dtypes():
    with pytest.raises(EvaluationError, match="x: dtype uint8"):
        b = JaxBackend()
        b.accept(jax.device_put(jnp.zeros(2, jnp.uint8), b.jax_device), "x")


# --------------------------------------------------------------------- jit
@pytest.mark.parametrize("dtype", [DType.float32, DType.float64])
def test_jit_takes_dicts_of_arrays(dtype):
    b = JaxBackend(dtype=dtype)
    b.seed(0)
    matmul, add = b.kernel("matmul"), b.kernel("add")

    def gradients(params, inputs, cotangents):
        y = add(matmul(inputs["x"], params["w"]), params["b"])
        return {"y": y}, {"w": matmul(b.kernel("transpose")(inputs["x"], axes=None), cotangents["y"])}, {}

    params = {"w": b.randn(4, 3), "b": b.randn(3)}
    inputs = {"x": b.randn(5, 4)}
    cot = {"y": b.ones(5, 3)}
    outs, grads, state = b.jit(gradients, what="gradients")(params, inputs, cot)
    eager = gradients(params, inputs, cot)
    assert state == {}
    assert outs["y"].dtype == b.native_dtype("float")
    np.testing.assert_allclose(b.to_numpy(outs["y"]), b.to_numpy(eager[0]["y"]), rtol=1e-5)
    np.testing.assert_allclose(b.to_numpy(grads["w"]), b.to_numpy(eager[1]["w"]), rtol=1e-5)


# ---------------------------------------------------------- half precision
@pytest.mark.parametrize("dtype", [DType.float16, DType.bfloat16])
def test_half_precision_kernels(dtype):
    b = JaxBackend(dtype=dtype)
    b.seed(0)
    x, w = b.randn(2, 3, 6, 6), b.randn(4, 3, 3, 3)
    y = b.kernel("conv2d")(x, w, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    p = b.kernel("max_pool2d")(y, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1))
    g = b.kernel("max_pool2d_grad")(
        y, b.ones(*p.shape), kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1)
    )
    s = b.softmax(b.kernel("gelu")(p.reshape(2, -1), approximate="tanh"))
    for arr in (y, p, g, s):
        assert b.dtype_of(arr) is dtype
    np.testing.assert_allclose(b.to_numpy(b.sum(s, axis=-1)).astype(np.float32), [1.0, 1.0], rtol=2e-2)
    assert float(b.to_numpy(b.sum(g)).astype(np.float32)) == p.size


def test_base_class_helpers_follow_the_backend_dtype():
    b = JaxBackend(dtype=DType.float64)
    x = b.randn(3, 4)
    for out in (
        b.mean(x),
        b.sum(x, axis=0),
        b.max(x, axis=1),
        b.exp(x),
        b.softmax(x),
        b.concat([x, x], axis=1),
        b.transpose(x),
        b.reshape(x, (4, 3)),
        b.uniform(0, 1, (2,)),
        b.full((2,), 0.1),
    ):
        assert out.dtype == jnp.float64
    assert b.argmax(x).dtype == jnp.int64
    assert repr(b) == "JaxBackend(dtype=ml.float64, device='cpu')"


def test_array_from_numpy_never_aliases_the_source():
    import mithril as ml

    be = ml.JaxBackend(dtype=ml.float32)
    for src in (np.arange(1024, dtype=np.float32), np.zeros((64, 64), np.float32), np.arange(8, dtype=np.int64)):
        x = be.array(src)
        before = np.array(x)
        src[...] = 99
        np.testing.assert_array_equal(np.array(x), before)
