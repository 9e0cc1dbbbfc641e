"""In-place kernels: element-wise ufuncs writing into a dead input's buffer (``np.add(a, b, out=a)``).

The core calls ``kernel(*inputs, out=<one of the inputs>, **attrs)`` only where ``out`` is an
intermediate of the output's shape and kind that nothing reads afterwards
(:mod:`mithril.codegen.inplace`). Each kernel also checks what the plan cannot see: ``out`` must be
a writeable ``ndarray`` (NumPy returns immutable scalars for 0-d results) and every operand of its
dtype (``out=`` would otherwise cast a wider result down). Otherwise it computes a new array, as the
primitive's own kernel does. The results are those of the ufuncs without ``out``, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import kernels

Kernel = Callable[..., Any]


def _fits(out: Any) -> bool:
    return type(out) is np.ndarray and out.flags.writeable


def _same_dtype(left: Any, right: Any) -> bool:
    return getattr(left, "dtype", None) is getattr(right, "dtype", None)  # NumPy's builtin dtypes are singletons


def _unary(ufunc: np.ufunc, floats: bool = False) -> Kernel:
    """``floats``: only a float ``out`` (the ufunc makes floats of ints)."""

    def kernel(input: Any, *, out: Any) -> Any:
        if out is input and _fits(out) and (not floats or out.dtype.kind == "f"):
            return ufunc(input, out)  # out positional: faster than the keyword
        return ufunc(input)

    kernel.__name__ = kernel.__qualname__ = f"{ufunc.__name__}_inplace"
    return kernel


def _binary(ufunc: np.ufunc, floats: bool = False) -> Kernel:
    def kernel(left: Any, right: Any, *, out: Any) -> Any:
        if (
            (out is left or out is right)
            and _fits(out)
            and _same_dtype(left, right)
            and (not floats or out.dtype.kind == "f")
        ):
            return ufunc(left, right, out=out)  # keyword: NumPy deprecates a positional out of maximum/minimum
        return ufunc(left, right)

    kernel.__name__ = kernel.__qualname__ = f"{ufunc.__name__}_inplace"
    return kernel


_ZEROS: dict[Any, np.ndarray] = {}


def relu(input: Any, *, out: Any) -> Any:
    """``np.maximum(input, 0)`` into ``input``."""
    if out is input and _fits(out) and out.dtype.kind in "fi":  # a bool relu is an int64 array
        zero = _ZEROS.get(out.dtype)
        if zero is None:
            zero = _ZEROS[out.dtype] = np.zeros((), out.dtype)
        return np.maximum(input, zero, out=out)  # a 0-d zero of out's dtype: the Python int is slower with out
    return kernels.relu(input)


def leaky_relu(input: Any, *, slope: float = 0.01, out: Any) -> Any:
    """``np.maximum(input, input * slope)`` into ``input`` (the kernel's own form for 0 <= slope <= 1)."""
    if out is input and 0.0 <= slope <= 1.0 and _fits(out) and out.dtype.kind == "f":
        return np.maximum(input, input * slope, out=out)
    return kernels.leaky_relu(input, slope=slope)


def where(condition: Any, left: Any, right: Any, *, out: Any) -> Any:
    """``np.where(condition, left, right)`` into ``left`` or ``right`` (never into the condition)."""
    if out is not condition and (out is left or out is right) and _fits(out) and _same_dtype(left, right):
        if out is right:
            np.copyto(out, left, where=condition)
        else:
            np.copyto(out, right, where=np.logical_not(condition))
        return out
    return np.where(condition, left, right)


#: (ufunc, float outputs only)
_UNARY = {
    "neg": (np.negative, False),
    "abs": (np.absolute, False),
    "exp": (np.exp, True),
    "log": (np.log, True),
    "sqrt": (np.sqrt, True),
    "sin": (np.sin, True),
    "cos": (np.cos, True),
    "tanh": (np.tanh, True),
}
_BINARY = {
    "add": (np.add, False),
    "sub": (np.subtract, False),
    "mul": (np.multiply, False),
    "div": (np.true_divide, True),
    "maximum": (np.maximum, False),
    "minimum": (np.minimum, False),
}

#: kernels (besides those with an in-place form) that always return a new array
FRESH = frozenset(
    {
        "matmul",
        "linear",
        "conv2d",
        "slice_grad",
        "softmax",
        "log_softmax",
        "greater",
        "greater_equal",
        "less",
        "less_equal",
        "equal",
        "not_equal",
    }
)


def inplace_kernels() -> dict[str, Kernel]:
    """The in-place kernels, by primitive."""
    table: dict[str, Kernel] = {name: _unary(f, floats) for name, (f, floats) in _UNARY.items()}
    table.update({name: _binary(f, floats) for name, (f, floats) in _BINARY.items()})
    table["relu"] = relu
    table["leaky_relu"] = leaky_relu
    table["where"] = where
    return table


__all__ = ["FRESH", "inplace_kernels"]
