"""TorchBackend: dtypes, devices, array helpers, randomness, accept()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mithril.backend import Backend
from mithril.dtypes import DType
from mithril.errors import EvaluationError, UnsupportedError
from mithril_torch import TorchBackend

ALL_FLOATS = [DType.float16, DType.bfloat16, DType.float32, DType.float64]
TORCH_OF = {
    DType.float16: torch.float16,
    DType.bfloat16: torch.bfloat16,
    DType.float32: torch.float32,
    DType.float64: torch.float64,
}


def test_class_attributes():
    assert issubclass(TorchBackend, Backend)
    assert TorchBackend.name == "torch"
    assert TorchBackend.distribution == "mithril-torch"
    assert set(TorchBackend.supported_dtypes) == set(ALL_FLOATS)
    assert TorchBackend.supports_jit is True
    assert TorchBackend.differentiates_natively is False


def test_defaults():
    b = TorchBackend()
    assert b.dtype is DType.float32 and b.device == "cpu"
    assert b.torch_device == torch.device("cpu")
    assert repr(b) == "TorchBackend(dtype=ml.float32, device='cpu')"


@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=lambda d: d.value)
def test_float_dtypes(dtype):
    b = TorchBackend(dtype=dtype)
    assert b.torch_dtype == TORCH_OF[dtype]
    for make in (
        lambda: b.randn(2, 3),
        lambda: b.rand(2, 3),
        lambda: b.zeros(2, 3),
        lambda: b.ones(2, 3),
        lambda: b.array([[1.0, 2.0, 3.0]] * 2),
        lambda: b.full((2, 3), 0.5),
    ):
        t = make()
        assert t.dtype == TORCH_OF[dtype] and t.shape == (2, 3) and b.is_array(t)
        assert b.dtype_of(t) is dtype
    assert b.native_dtype("float") == TORCH_OF[dtype]
    assert b.native_dtype("int") == torch.int64
    assert b.native_dtype("bool") == torch.bool


@pytest.mark.parametrize("dtype", [DType.int64, DType.bool, "float32", None])
def test_rejects_non_float_dtypes(dtype):
    with pytest.raises(UnsupportedError):
        TorchBackend(dtype=dtype)  # type: ignore[arg-type]


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "cpu:0"])
def test_cpu_device(device):
    assert TorchBackend(device=device).device == "cpu"


@pytest.mark.parametrize(
    "device,match",
    [
        ("tpu", "invalid device|not supported"),
        ("gpu", "invalid device|not supported"),
        ("meta", "not supported"),
        ("cuda:x", "invalid device"),
        ("cpu:1", "only one CPU"),
        ("", "invalid device"),
    ],
)
def test_bad_devices(device, match):
    with pytest.raises(UnsupportedError, match=match):
        TorchBackend(device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_unavailable_is_a_clear_error(device):
    with pytest.raises(UnsupportedError, match=r"not available.*device='cpu'"):
        TorchBackend(device=device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device_is_canonical_and_arrays_stay_there():
    b = TorchBackend(device="cuda")
    assert b.device == f"cuda:{torch.cuda.current_device()}"
    x = b.randn(3, 4)
    assert x.device == b.torch_device and b.is_array(x)
    y = b.core_kernels()["matmul"](x, b.array(np.ones((4, 2))))
    assert y.device == b.torch_device
    assert isinstance(b.to_numpy(y), np.ndarray)
    with pytest.raises(UnsupportedError, match="does not exist"):
        TorchBackend(device=f"cuda:{torch.cuda.device_count()}")
    with pytest.raises(EvaluationError, match="cpu"):
        b.accept(torch.zeros(2), "input")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is available here")
def test_mps_unavailable_is_a_clear_error():
    with pytest.raises(UnsupportedError, match="not available"):
        TorchBackend(device="mps")


# ------------------------------------------------------------------ helpers
def test_array_from_various_sources():
    b = TorchBackend(dtype=DType.float64)
    assert b.array([1.0, 2.0]).dtype == torch.float64
    assert b.array(np.float32(1.5)).shape == ()
    assert b.array(np.array([1, 2], dtype=np.int32)).dtype == torch.int32  # ints keep their dtype
    assert b.array([1, 2]).dtype == torch.int64
    assert b.array([True, False]).dtype == torch.bool
    assert b.array(np.zeros(2, np.float16)).dtype == torch.float64  # floats get the backend dtype
    assert b.array([1, 2], dtype=DType.float32).dtype == torch.float32
    assert b.array(torch.ones(2, dtype=torch.float32)).dtype == torch.float64
    with pytest.raises(TypeError):
        b.array(np.array(["a"]))


def test_array_never_shares_memory():
    b = TorchBackend(dtype=DType.float32)
    src_np = np.zeros(3, np.float32)
    src_t = torch.zeros(3)
    from_np, from_t = b.array(src_np), b.array(src_t)
    src_np[0] = 1.0
    src_t[0] = 1.0
    assert from_np[0] == 0.0 and from_t[0] == 0.0


def test_array_accepts_read_only_numpy_without_warning(recwarn):
    a = np.arange(3.0)
    a.flags.writeable = False
    TorchBackend().array(a)
    assert not [w for w in recwarn if "writable" in str(w.message)]


def test_to_numpy_detaches_and_copies():
    b = TorchBackend()
    x = b.randn(2, 3).requires_grad_(True)
    y = x * 2
    out = b.to_numpy(y)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (2, 3)
    z = b.zeros(2)
    arr = b.to_numpy(z)
    arr[0] = 5.0
    assert float(z[0]) == 0.0


def test_to_numpy_of_bfloat16_is_float32():
    b = TorchBackend(dtype=DType.bfloat16)
    out = b.to_numpy(b.ones(2))
    assert out.dtype == np.float32 and out.tolist() == [1.0, 1.0]


def test_shape_and_dtype_of():
    b = TorchBackend()
    x = b.zeros(2, 3)
    assert b.shape_of(x) == (2, 3)
    assert b.dtype_of(x) is DType.float32
    assert b.dtype_of(b.zeros(2, dtype=DType.int32)) is DType.int32
    assert b.kind_of(b.zeros(2, dtype=DType.bool)) == "bool"
    with pytest.raises(TypeError):
        b.dtype_of(torch.zeros(2, dtype=torch.complex64))


def test_shape_as_tuple_or_varargs():
    b = TorchBackend()
    assert b.randn((2, 3)).shape == (2, 3) == b.zeros([2, 3]).shape
    assert b.randn().shape == ()


def test_is_array():
    b = TorchBackend()
    assert b.is_array(torch.zeros(2))
    assert not b.is_array(np.zeros(2))
    assert not b.is_array(1.0)
    assert not b.is_array(torch.zeros(2, device="meta"))


# --------------------------------------------------------------- randomness
@pytest.mark.parametrize("dtype", ALL_FLOATS, ids=lambda d: d.value)
def test_seed_makes_samples_reproducible(dtype):
    b = TorchBackend(dtype=dtype)
    b.seed(7)
    first = (b.randn(4, 5), b.rand(3), b.uniform(-2.0, 2.0, (6,)))
    b.seed(7)
    second = (b.randn(4, 5), b.rand(3), b.uniform(-2.0, 2.0, (6,)))
    for a, c in zip(first, second):
        assert torch.equal(a, c)
    b.seed(8)
    assert not torch.equal(first[0], b.randn(4, 5))


def test_generator_is_owned_by_the_backend():
    a, c = TorchBackend(), TorchBackend()
    a.seed(3)
    c.seed(3)
    torch.manual_seed(0)
    x = a.randn(10)
    torch.randn(100)  # the global generator does not disturb the backend's
    a.randn(5)  # neither does another backend's
    assert torch.equal(x, c.randn(10))
    assert a.generator is not c.generator and a.generator.device == a.torch_device


def test_unseeded_backends_differ():
    assert not torch.equal(TorchBackend().randn(8), TorchBackend().randn(8))


def test_sample_statistics():
    b = TorchBackend(dtype=DType.float64)
    b.seed(0)
    n = b.randn(20000)
    u = b.rand(20000)
    assert abs(float(n.mean())) < 0.05 and abs(float(n.std()) - 1) < 0.05
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0 and abs(float(u.mean()) - 0.5) < 0.02


def test_zeros_ones_full_dtypes():
    b = TorchBackend()
    assert b.zeros(2, dtype=DType.int64).dtype == torch.int64
    assert b.ones(2, dtype=DType.bool).dtype == torch.bool
    assert b.full((2,), 3, dtype=DType.int32).tolist() == [3, 3]
    assert b.ones(2, 2).sum() == 4


# ------------------------------------------------------------------- accept
def test_accept_passes_matching_tensors_through_unchanged():
    b = TorchBackend(dtype=DType.float64)
    for x in (b.randn(2), b.array([1, 2]), b.array([True]), b.zeros(2, dtype=DType.int32)):
        assert b.accept(x, "input") is x


def test_accept_rejects_other_float_dtype_naming_both():
    b = TorchBackend(dtype=DType.float32)
    with pytest.raises(EvaluationError, match=r"weight.*torch\.float64.*torch\.float32"):
        b.accept(torch.zeros(2, dtype=torch.float64), "weight")
    with pytest.raises(EvaluationError, match=r"input.*torch\.bfloat16.*torch\.float32"):
        b.accept(torch.zeros(2, dtype=torch.bfloat16), "input")


def test_accept_rejects_other_device_naming_both():
    b = TorchBackend()
    with pytest.raises(EvaluationError, match=r"params\['w'\].*'meta'.*'cpu'"):
        b.accept(torch.zeros(2, device="meta"), "params['w']")


def test_accept_rejects_non_tensors_naming_what():
    b = TorchBackend()
    for x in (np.zeros(2, np.float32), [1.0], 1.0):
        with pytest.raises(EvaluationError, match=r"input.*backend\.array"):
            b.accept(x, "input")


def test_accept_rejects_dtypes_mithril_does_not_know():
    b = TorchBackend()
    for dt in (torch.complex64, torch.uint8):
        with pytest.raises(EvaluationError, match="input"):
            b.accept(torch.zeros(2, dtype=dt), "input")


# -------------------------------------------------------------- kernel table
def test_kernel_table_is_per_instance_and_cast_uses_the_backend_dtype():
    b32, b64 = TorchBackend(dtype=DType.float32), TorchBackend(dtype=DType.float64)
    x = torch.tensor([1, 2])
    assert b32.core_kernels()["cast"](x, kind="float").dtype == torch.float32
    assert b64.core_kernels()["cast"](x, kind="float").dtype == torch.float64


def test_backend_convenience_methods_go_through_the_kernels():
    b = TorchBackend(dtype=DType.float64)
    x = b.array(np.arange(6.0).reshape(2, 3))
    assert b.mean(x).item() == 2.5
    assert b.sum(x, axis=0).tolist() == [3.0, 5.0, 7.0]
    assert b.max(x, axis=1, keepdims=True).shape == (2, 1)
    assert b.argmax(x).tolist() == [2, 2]
    assert b.matmul(x, b.transpose(x)).shape == (2, 2)
    assert b.concat([x, x], axis=1).shape == (2, 6)
    assert b.reshape(x, (3, 2)).shape == (3, 2)
    np.testing.assert_allclose(b.to_numpy(b.softmax(x)).sum(axis=-1), [1.0, 1.0])


@pytest.mark.parametrize("dtype", [DType.float16, DType.bfloat16], ids=lambda d: d.value)
def test_half_precision_kernels_keep_their_dtype(dtype):
    b = TorchBackend(dtype=dtype)
    k = b.core_kernels()
    x, w = b.randn(1, 2, 5, 5), b.randn(3, 2, 3, 3)
    for out in (
        k["exp"](x),
        k["add"](x, x),
        k["softmax"](x, axis=-1),
        k["mean"](x, axis=(1,), keepdims=False),
        k["max_pool2d"](x, kernel_size=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1)),
        k["cast"](k["greater"](x, x), kind="float"),
        k["conv2d"](x, w),
    ):
        assert out.dtype == b.torch_dtype
