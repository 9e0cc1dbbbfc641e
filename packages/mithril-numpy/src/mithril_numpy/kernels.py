"""The kernel table: one NumPy implementation per core primitive.

Contract (see ``mithril.primitives``): ``kernel(*inputs, **attrs) -> array``,
inputs in the order of ``Primitive.inputs``, every attribute as a keyword.
Kernels never write into their inputs; some return views of them
(``transpose``, ``reshape``, ``broadcast_to``, ``slice``, a ``cast`` to the
same dtype). Float results keep the input's float dtype. The table is built
per backend instance, so ``cast(kind="float")`` knows the backend's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import control_flow, conv, indexing, pool, rng, special

Kernel = Callable[..., Any]


# ------------------------------------------------------------- element-wise
def leaky_relu(input: np.ndarray, *, slope: float = 0.01) -> np.ndarray:
    if 0.0 <= slope <= 1.0:
        return np.maximum(input, input * slope)  # one comparison fewer; nan propagates
    return np.where(input > 0, input, input * slope)


def relu(input: np.ndarray) -> np.ndarray:
    return np.maximum(input, 0)


def gelu(input: np.ndarray, *, approximate: str = "none") -> np.ndarray:
    return special.gelu(input, approximate)


# --------------------------------------------------------------- reductions
def sum_(input: np.ndarray, *, axis: tuple[int, ...] | None = None, keepdims: bool = False) -> np.ndarray:
    return np.sum(input, axis=axis, keepdims=keepdims)


def mean(input: np.ndarray, *, axis: tuple[int, ...] | None = None, keepdims: bool = False) -> np.ndarray:
    out = np.mean(input, axis=axis, keepdims=keepdims)
    # the output kind is the input's: an int mean is truncated back to the int dtype
    return out if input.dtype.kind == "f" else np.asarray(out).astype(input.dtype)


def max_(input: np.ndarray, *, axis: tuple[int, ...] | None = None, keepdims: bool = False) -> np.ndarray:
    return np.max(input, axis=axis, keepdims=keepdims)


def min_(input: np.ndarray, *, axis: tuple[int, ...] | None = None, keepdims: bool = False) -> np.ndarray:
    return np.min(input, axis=axis, keepdims=keepdims)


def argmax(input: np.ndarray, *, axis: tuple[int, ...] | None = (-1,), keepdims: bool = False) -> np.ndarray:
    if axis is not None and len(axis) != 1:
        raise ValueError(f"argmax: axis must be a 1-tuple, got {axis!r}")
    one_axis = None if axis is None else axis[0]
    return np.argmax(input, axis=one_axis, keepdims=keepdims).astype(np.int64, copy=False)


def softmax(input: np.ndarray, *, axis: int = -1) -> np.ndarray:
    out = input - np.max(input, axis=axis, keepdims=True)
    np.exp(out, out=out)
    out /= np.sum(out, axis=axis, keepdims=True)
    return out


def log_softmax(input: np.ndarray, *, axis: int = -1) -> np.ndarray:
    shifted = input - np.max(input, axis=axis, keepdims=True)
    out = shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    return out


# ---------------------------------------------------------------- structure
def transpose(input: np.ndarray, *, axes: tuple[int, ...] | None = None) -> np.ndarray:
    return np.transpose(input, axes)


def reshape(input: np.ndarray, *, shape: Sequence[int]) -> np.ndarray:
    return np.reshape(input, tuple(shape))


def flatten(input: np.ndarray, *, start_axis: int = 1, end_axis: int = -1) -> np.ndarray:
    """As ``torch.flatten``: merge axes ``start_axis..end_axis`` (rank 0 becomes rank 1)."""
    rank = input.ndim
    if rank == 0:
        return input.reshape(1)
    start, end = start_axis % rank, end_axis % rank
    shape = input.shape[:start] + (math.prod(input.shape[start : end + 1]),) + input.shape[end + 1 :]
    return input.reshape(shape)


def broadcast_to(input: np.ndarray, *, shape: Sequence[int]) -> np.ndarray:
    return np.broadcast_to(input, tuple(shape))


def concat(*inputs: np.ndarray, axis: int = 0) -> np.ndarray:
    return np.concatenate(inputs, axis=axis)


def _slices(
    starts: Sequence[int | None], stops: Sequence[int | None], steps: Sequence[int | None]
) -> tuple[slice, ...]:
    return tuple(slice(a, b, c) for a, b, c in zip(starts, stops, steps))


def slice_(
    input: np.ndarray, *, starts: Sequence[int | None], stops: Sequence[int | None], steps: Sequence[int | None]
) -> np.ndarray:
    return input[_slices(starts, stops, steps)]


def slice_grad(
    grad: np.ndarray,
    *,
    input_shape: Sequence[int],
    starts: Sequence[int | None],
    stops: Sequence[int | None],
    steps: Sequence[int | None],
) -> np.ndarray:
    out = np.zeros(tuple(input_shape), dtype=grad.dtype)
    out[_slices(starts, stops, steps)] = grad
    return out


# -------------------------------------------------------------------- table
def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x @ w.T + b (the optional fused primitive), with the add done in place."""
    out = np.matmul(x, w.T)
    out += b
    return out


def build_kernels(float_dtype: np.dtype | type) -> dict[str, Kernel]:
    """The kernels of every core primitive for a backend whose float dtype is ``float_dtype``."""
    kinds = {"float": np.dtype(float_dtype), "int": np.dtype(np.int64), "bool": np.dtype(np.bool_)}

    def cast(input: np.ndarray, *, kind: str = "float") -> np.ndarray:
        try:
            target = kinds[kind]
        except KeyError:
            raise ValueError(f"cast: kind must be 'float', 'int' or 'bool', got {kind!r}") from None
        return np.asarray(input).astype(target, copy=False)

    return {
        # binary, NumPy broadcasting
        "add": np.add,
        "sub": np.subtract,
        "mul": np.multiply,
        "div": np.true_divide,
        "pow": np.power,
        "maximum": np.maximum,
        "minimum": np.minimum,
        "greater": np.greater,
        "greater_equal": np.greater_equal,
        "less": np.less,
        "less_equal": np.less_equal,
        "equal": np.equal,
        "not_equal": np.not_equal,
        "where": np.where,
        "cast": cast,
        # unary
        "neg": np.negative,
        "abs": np.absolute,
        "sign": np.sign,
        "exp": np.exp,
        "log": np.log,
        "sqrt": np.sqrt,
        "sin": np.sin,
        "cos": np.cos,
        "tanh": np.tanh,
        "sigmoid": special.sigmoid,
        "relu": relu,
        "erf": special.erf,
        "leaky_relu": leaky_relu,
        "gelu": gelu,
        # structure
        "matmul": np.matmul,
        "linear": linear,  # optional fused primitive
        "transpose": transpose,
        "reshape": reshape,
        "flatten": flatten,
        "broadcast_to": broadcast_to,
        "concat": concat,
        "slice": slice_,
        "slice_grad": slice_grad,
        # reductions
        "sum": sum_,
        "mean": mean,
        "max": max_,
        "min": min_,
        "argmax": argmax,
        "softmax": softmax,
        "log_softmax": log_softmax,
        # convolution and pooling
        "conv2d": conv.conv2d,
        "conv2d_input_grad": conv.conv2d_input_grad,
        "conv2d_weight_grad": conv.conv2d_weight_grad,
        "max_pool2d": pool.max_pool2d,
        "max_pool2d_grad": pool.max_pool2d_grad,
        "avg_pool2d": pool.avg_pool2d,
        "avg_pool2d_grad": pool.avg_pool2d_grad,
        # indexing, reshaping by example, transposed convolution, masks (model zoo)
        **indexing.KERNELS,
        # random primitives: kernel(key, *inputs, **attrs)
        **rng.KERNELS,
        # loops and branches over sub-graphs (mithril.ir.control_flow)
        **control_flow.KERNELS,
    }
