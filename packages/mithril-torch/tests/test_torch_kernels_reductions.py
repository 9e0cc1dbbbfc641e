"""sum, mean, max, min, argmax, softmax, log_softmax against NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch_oracles as ref

COVERED = ("sum", "mean", "max", "min", "argmax", "softmax", "log_softmax")

REDUCE = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}
AXES = [None, (0,), (1,), (-1,), (0, 2), (2, 0), (-1, -3), (0, 1, 2)]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", sorted(REDUCE))
def test_reduction(name, axis, keepdims, kernels, case, rng):
    x, xr = case.put(rng.standard_normal((3, 4, 5)))
    case.check(kernels[name](x, axis=axis, keepdims=keepdims), REDUCE[name](xr, axis=axis, keepdims=keepdims), scale=10)


@pytest.mark.parametrize("name", sorted(REDUCE))
def test_reduction_defaults_reduce_everything(name, kernels, case, rng):
    x, xr = case.put(rng.standard_normal((3, 4)))
    case.check(kernels[name](x), REDUCE[name](xr))


@pytest.mark.parametrize("name", sorted(REDUCE))
def test_reduction_over_no_axes_is_identity(name, kernels, case, rng):
    """NumPy semantics: axis=() reduces nothing (torch alone would reduce everything)."""
    x, xr = case.put(rng.standard_normal((3, 4)))
    case.check(kernels[name](x, axis=(), keepdims=False), REDUCE[name](xr, axis=()))


@pytest.mark.parametrize("name", sorted(REDUCE))
def test_reduction_of_zero_dim(name, kernels, case):
    x, xr = case.put(np.array(2.5))
    case.check(kernels[name](x, axis=None, keepdims=True), REDUCE[name](xr, keepdims=True))


def test_max_min_of_ints(kernels, backend):
    x = backend.array(np.array([[3, -1], [2, 7]]))
    assert kernels["max"](x, axis=(1,)).tolist() == [3, 7]
    assert kernels["min"](x).tolist() == -1
    assert kernels["sum"](x, axis=(0,)).dtype == torch.int64


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [(0,), (1,), (-1,), None], ids=str)
def test_argmax(axis, keepdims, kernels, case, rng):
    x, xr = case.put(rng.standard_normal((3, 4, 5)))
    np_axis = None if axis is None else axis[0]
    case.check(kernels["argmax"](x, axis=axis, keepdims=keepdims), np.argmax(xr, axis=np_axis, keepdims=keepdims))


def test_argmax_default_axis_and_ties(kernels, case):
    x, _xr = case.put(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]]))
    case.check(kernels["argmax"](x), np.array([1, 0]))  # first of tied maxima, as NumPy


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax(name, axis, kernels, case, rng):
    x, xr = case.put(rng.standard_normal((3, 4, 5)) * 4)
    case.check(kernels[name](x, axis=axis), getattr(ref, name)(xr, axis))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_is_stable_and_defaults_to_last_axis(name, kernels, case, rng):
    x, xr = case.put(rng.standard_normal((2, 6)) + 1000.0)
    got = kernels[name](x)
    assert torch.isfinite(got).all()
    case.check(got, getattr(ref, name)(xr, -1), scale=1e4)
