"""The NumpyBackend helpers and its plugin registration."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from mithril.backend import Backend
from mithril.dtypes import DType
from mithril.errors import UnsupportedError
from mithril_numpy import plugin
from mithril_numpy.backend import NumpyBackend


@pytest.mark.parametrize("dtype", [DType.float16, DType.float32, DType.float64])
def test_dtypes(dtype):
    b = NumpyBackend(dtype)
    assert isinstance(b, Backend) and b.name == "numpy" and b.distribution == "mithril-numpy"
    assert b.native_dtype("float") == dtype.numpy
    assert b.native_dtype("int") == np.int64 and b.native_dtype("bool") == np.bool_
    x = b.randn(3, 4)
    assert x.dtype == dtype.numpy and x.shape == (3, 4)
    u = b.rand(1000)
    assert u.dtype == dtype.numpy and u.min() >= 0 and u.max() < 1
    assert b.uniform(-2.0, 3.0, (5,)).dtype == dtype.numpy
    assert b.zeros(2, 3).dtype == dtype.numpy and b.ones(2).dtype == dtype.numpy
    assert b.full((2,), 7.0).dtype == dtype.numpy
    assert b.dtype_of(x) is dtype and b.kind_of(x) == "float"


def test_unsupported_dtype_and_device():
    with pytest.raises(UnsupportedError, match="cpu"):
        NumpyBackend(DType.float32, device="cuda")
    with pytest.raises(UnsupportedError):
        NumpyBackend(DType.bfloat16)
    with pytest.raises(UnsupportedError):
        NumpyBackend(DType.int64)
    with pytest.raises(UnsupportedError):
        NumpyBackend().array([1.0], dtype=DType.bfloat16)


def test_array_dtype_rules():
    b = NumpyBackend(DType.float32)
    assert b.array([1.5, 2]).dtype == np.float32
    assert b.array(np.arange(3, dtype=np.float64)).dtype == np.float32
    assert b.array([1, 2]).dtype == np.int64
    assert b.array(np.arange(3, dtype=np.int32)).dtype == np.int64
    assert b.array([True, False]).dtype == np.bool_
    assert b.array(3.0).shape == ()
    assert b.array([1, 2], dtype=DType.float64).dtype == np.float64
    assert b.array([1.7], dtype=DType.int32).dtype == np.int32
    with pytest.raises(UnsupportedError):
        b.array(["a"])
    src = np.ones(3, np.float32)
    out = b.array(src)
    out[0] = 5
    assert src[0] == 1  # array copies


def test_seed_reproduces():
    b = NumpyBackend(DType.float64)
    b.seed(3)
    first = (b.randn(4), b.rand(2, 2))
    b.seed(3)
    second = (b.randn(4), b.rand(2, 2))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    other = NumpyBackend(DType.float64)
    other.seed(3)
    np.testing.assert_array_equal(other.randn(4), first[0])  # the generator belongs to the instance


def test_is_array_shape_to_numpy():
    b = NumpyBackend()
    x = b.randn(2, 3)
    assert b.is_array(x) and b.is_array(np.float32(1.0)) and b.is_array(np.sum(x))
    assert not b.is_array([1.0]) and not b.is_array(1.0)
    assert b.shape_of(x) == (2, 3)
    y = b.to_numpy(x)
    assert isinstance(y, np.ndarray) and y is not x
    np.testing.assert_array_equal(y, x)
    assert b.accept(x, "input") is x


def test_constant_is_read_only_and_typed():
    b = NumpyBackend(DType.float32)
    c = b.constant(np.array(2.0))
    assert c.dtype == np.float32 and not c.flags.writeable
    assert b.constant(np.array([1, 2])).dtype == np.int64
    x = np.ones(3, np.float32)
    assert (x * c).dtype == np.float32


def test_helpers_go_through_kernels():
    b = NumpyBackend(DType.float64)
    x = b.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(b.mean(x, axis=0), [2.0, 3.0])
    np.testing.assert_allclose(b.softmax(x).sum(axis=-1), [1.0, 1.0])
    assert b.argmax(x, axis=-1).tolist() == [1, 1]
    np.testing.assert_allclose(b.matmul(x, x), x @ x)


def test_plugin_registers_the_backend():
    assert plugin.MITHRIL_PLUGIN_API == 1
    registered: list[tuple[object, object]] = []
    plugin.mithril_register_backends(register=lambda ref, name=None: registered.append((ref, name)))
    assert registered == [("mithril_numpy.backend:NumpyBackend", "numpy")]  # lazy: imported on first use
    module, _, attr = registered[0][0].partition(":")
    assert getattr(importlib.import_module(module), attr) is NumpyBackend
