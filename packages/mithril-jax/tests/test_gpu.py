"""JaxBackend on a GPU: placement, accept across devices, kernels (skipped without a GPU)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from mithril.dtypes import DType
from mithril.errors import EvaluationError, UnsupportedError
from mithril_jax import JaxBackend

try:
    GPUS = jax.devices("gpu")
except RuntimeError:
    GPUS = []

pytestmark = pytest.mark.skipif(not GPUS, reason="no GPU visible to JAX")


@pytest.mark.parametrize("dtype", [DType.float32, DType.float64])
def test_arrays_and_results_stay_on_the_gpu(dtype):
    b = JaxBackend(dtype=dtype, device="gpu")
    assert b.jax_device == GPUS[0]
    b.seed(0)
    x, w = b.randn(2, 3, 8, 8), b.randn(4, 3, 3, 3)
    y = b.kernel("conv2d")(x, w, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    g = b.kernel("max_pool2d_grad")(
        y, b.ones(2, 4, 4, 4), kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1)
    )
    f = b.jit(lambda d: {"s": b.kernel("sum")(d["g"], axis=None, keepdims=False)}, what="evaluate")
    s = f({"g": g})["s"]
    for arr in (x, w, y, g, s, b.array([1.0]), b.zeros(2)):
        assert arr.devices() == {GPUS[0]}
        assert b.accept(arr, "x") is arr
    assert b.dtype_of(s) is dtype and float(b.to_numpy(s)) == 2 * 4 * 4 * 4


def test_accept_rejects_cpu_arrays_on_a_gpu_backend():
    gpu, cpu = JaxBackend(device="gpu"), JaxBackend(device="cpu")
    with pytest.raises(EvaluationError, match=r"inputs\['x'\]: array is on .*cpu.* runs on"):
        gpu.accept(cpu.ones(2), "inputs['x']")
    moved = gpu.array(cpu.ones(2))
    assert moved.devices() == {GPUS[0]}


def test_gpu_index_out_of_range():
    with pytest.raises(UnsupportedError, match="does not exist"):
        JaxBackend(device=f"gpu:{len(GPUS)}")


def test_float64_conv_and_pool_grads_match_torch_on_gpu():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    b = JaxBackend(dtype=DType.float64, device="gpu")
    rng = np.random.default_rng(0)
    xn = rng.integers(0, 3, (2, 4, 9, 9)).astype(np.float64)  # many ties
    wn = rng.standard_normal((6, 2, 3, 3))
    attrs = dict(stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=2)
    tx, tw = torch.tensor(xn, requires_grad=True), torch.tensor(wn, requires_grad=True)
    ty = F.conv2d(tx, tw, **attrs)
    gn = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(gn))
    x, w, g = b.array(xn), b.array(wn), b.array(gn)
    np.testing.assert_allclose(b.to_numpy(b.kernel("conv2d")(x, w, **attrs)), ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(
        b.to_numpy(b.kernel("conv2d_input_grad")(g, w, input_shape=xn.shape, **attrs)),
        tx.grad.numpy(),
        rtol=1e-12,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        b.to_numpy(b.kernel("conv2d_weight_grad")(x, g, weight_shape=wn.shape, **attrs)),
        tw.grad.numpy(),
        rtol=1e-12,
        atol=1e-12,
    )
    pool = dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 1))
    tx2 = torch.tensor(xn, requires_grad=True)
    ty2 = F.max_pool2d(tx2, 3, 2, 1)
    gp = rng.standard_normal(tuple(ty2.shape))
    ty2.backward(torch.tensor(gp))
    # overlapping windows: a cell's two contributions may be added in another order
    np.testing.assert_allclose(
        b.to_numpy(b.kernel("max_pool2d_grad")(x, b.array(gp), **pool)), tx2.grad.numpy(), rtol=1e-14, atol=1e-15
    )
