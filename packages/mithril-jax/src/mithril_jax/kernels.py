"""JAX kernels for every core primitive: ``kernel(*inputs, **attrs) -> jax.Array``.

Inputs come in :attr:`mithril.Primitive.inputs` order, attributes as keywords.
Semantics follow NumPy and ``torch.nn.functional``. Kernels that combine several
operations are ``jax.jit``-compiled with their attributes static, so an eager call
dispatches one cached XLA computation and a call under an outer ``jax.jit`` is
simply inlined. Convolution and pooling live in :mod:`mithril_jax.nn_kernels`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from mithril.errors import UnsupportedError

from . import control_flow, indexing, nn_kernels, normalization, rng
from .static import hashable, static_jit
from .x64 import int_dtype

Kernel = Callable[..., Any]
Array = jax.Array

_SQRT_HALF = math.sqrt(0.5)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


# ------------------------------------------------------------ element-wise
_BINARY: dict[str, Kernel] = {
    "add": jnp.add,
    "sub": jnp.subtract,
    "mul": jnp.multiply,
    "div": jnp.true_divide,
    "pow": jnp.power,
    "maximum": jnp.maximum,
    "minimum": jnp.minimum,
    "greater": jnp.greater,
    "greater_equal": jnp.greater_equal,
    "less": jnp.less,
    "less_equal": jnp.less_equal,
    "equal": jnp.equal,
    "not_equal": jnp.not_equal,
}

_UNARY: dict[str, Kernel] = {
    "neg": jnp.negative,
    "abs": jnp.abs,
    "sign": jnp.sign,
    "exp": jnp.exp,
    "log": jnp.log,
    "sqrt": jnp.sqrt,
    "sin": jnp.sin,
    "cos": jnp.cos,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "erf": jax.lax.erf,
}


def where(condition: Array, left: Array, right: Array) -> Array:
    """``condition ? left : right`` with broadcasting."""
    return jnp.where(condition, left, right)


def relu(x: Array) -> Array:
    """max(x, 0); NaN propagates (as torch.relu)."""
    return jnp.maximum(x, jnp.zeros((), x.dtype))


@static_jit("slope")
def _leaky_relu(x: Array, *, slope: float) -> Array:
    return jnp.where(x > 0, x, x * jnp.asarray(slope, x.dtype))


def leaky_relu(x: Array, *, slope: float = 0.01) -> Array:
    """x if x > 0 else slope * x."""
    return _leaky_relu(x, slope=float(slope))


@static_jit("approximate")
def _gelu(x: Array, *, approximate: str) -> Array:
    half = jnp.asarray(0.5, x.dtype)
    if approximate == "tanh":
        inner = jnp.asarray(_SQRT_2_OVER_PI, x.dtype) * (x + jnp.asarray(0.044715, x.dtype) * x * x * x)
        return half * x * (1 + jnp.tanh(inner))
    return half * x * (1 + jax.lax.erf(x * jnp.asarray(_SQRT_HALF, x.dtype)))


def gelu(x: Array, *, approximate: str = "none") -> Array:
    """x * Phi(x); ``approximate='tanh'`` is torch's tanh formula."""
    if approximate not in ("none", "tanh"):
        raise UnsupportedError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _gelu(x, approximate=approximate)


def make_cast(float_dtype: Any) -> Kernel:
    """``cast`` for a backend whose 'float' kind is ``float_dtype``."""

    def cast(x: Array, *, kind: str = "float") -> Array:
        """Convert to kind 'float' (backend dtype), 'int' (int64 under x64, else int32) or 'bool'."""
        if kind == "float":
            return x.astype(float_dtype)
        if kind == "int":
            return x.astype(int_dtype())
        if kind == "bool":
            return x.astype(jnp.bool_)
        raise UnsupportedError(f"cast: kind must be 'float', 'int' or 'bool', got {kind!r}")

    return cast


# -------------------------------------------------------------- reductions
def _axis(axis: int | Sequence[int] | None) -> tuple[int, ...] | None:
    if axis is None:
        return None
    if isinstance(axis, int):
        return (axis,)
    return tuple(int(a) for a in axis)


def _reduction(fn: Kernel) -> Kernel:
    def reduce(x: Array, *, axis: Sequence[int] | None = None, keepdims: bool = False) -> Array:
        return fn(x, axis=_axis(axis), keepdims=bool(keepdims))

    reduce.__name__ = reduce.__qualname__ = fn.__name__
    reduce.__doc__ = f"{fn.__name__} over ``axis`` (a tuple, or None for all axes)."
    return reduce


def argmax(x: Array, *, axis: Sequence[int] | None = (-1,), keepdims: bool = False) -> Array:
    """Index of the first maximum along one axis (a 1-tuple); None flattens."""
    ax = _axis(axis)
    if ax is not None and len(ax) != 1:
        raise UnsupportedError(f"argmax: axis must name one axis, got {axis!r}")
    return jnp.argmax(x, axis=None if ax is None else ax[0], keepdims=bool(keepdims))


def softmax(x: Array, *, axis: int = -1) -> Array:
    """Numerically stable softmax over one axis."""
    return jax.nn.softmax(x, axis=int(axis))


def log_softmax(x: Array, *, axis: int = -1) -> Array:
    """Numerically stable log-softmax over one axis."""
    return jax.nn.log_softmax(x, axis=int(axis))


# --------------------------------------------------------------- structure
def transpose(x: Array, *, axes: Sequence[int] | None = None) -> Array:
    """Permute axes; None reverses them."""
    return jnp.transpose(x, None if axes is None else tuple(axes))


def reshape(x: Array, *, shape: Sequence[int]) -> Array:
    """Reshape; one entry may be -1."""
    return jnp.reshape(x, tuple(shape))


def flatten(x: Array, *, start_axis: int = 1, end_axis: int = -1) -> Array:
    """Merge axes ``start_axis..end_axis`` into one, as ``torch.flatten``."""
    if x.ndim == 0:
        return jnp.reshape(x, (1,))
    s, e = start_axis % x.ndim, end_axis % x.ndim
    if e < s:
        raise UnsupportedError(f"flatten: end_axis {end_axis} comes before start_axis {start_axis}")
    shape = x.shape[:s] + (math.prod(x.shape[s : e + 1]),) + x.shape[e + 1 :]
    return jnp.reshape(x, shape)


def broadcast_to(x: Array, *, shape: Sequence[int]) -> Array:
    """NumPy ``broadcast_to``."""
    return jnp.broadcast_to(x, tuple(shape))


def concat(*xs: Array, axis: int = 0) -> Array:
    """Join any number of arrays along an existing axis."""
    return jnp.concatenate(xs, axis=int(axis))


def _slices(starts: Sequence[Any], stops: Sequence[Any], steps: Sequence[Any]) -> tuple[slice, ...]:
    return tuple(slice(a, b, c) for a, b, c in zip(starts, stops, steps))


@static_jit("starts", "stops", "steps")
def _slice(x: Array, *, starts: tuple[Any, ...], stops: tuple[Any, ...], steps: tuple[Any, ...]) -> Array:
    return x[_slices(starts, stops, steps)]


def slice_(x: Array, *, starts: Sequence[Any], stops: Sequence[Any], steps: Sequence[Any]) -> Array:
    """``x[starts[0]:stops[0]:steps[0], ...]`` over the leading ``len(starts)`` axes."""
    return _slice(x, starts=hashable(starts), stops=hashable(stops), steps=hashable(steps))


@static_jit("input_shape", "starts", "stops", "steps")
def _slice_grad(
    g: Array, *, input_shape: tuple[int, ...], starts: tuple[Any, ...], stops: tuple[Any, ...], steps: tuple[Any, ...]
) -> Array:
    return jnp.zeros(input_shape, g.dtype).at[_slices(starts, stops, steps)].set(g)


def slice_grad(
    g: Array, *, input_shape: Sequence[int], starts: Sequence[Any], stops: Sequence[Any], steps: Sequence[Any]
) -> Array:
    """``zeros(input_shape)`` with ``g`` written at the slice (the transpose of ``slice``)."""
    return _slice_grad(
        g, input_shape=hashable(input_shape), starts=hashable(starts), stops=hashable(stops), steps=hashable(steps)
    )


# ------------------------------------------------------------------- table
def _linear(x: Any, w: Any, b: Any) -> Any:
    """x @ w.T + b (the optional fused primitive)."""
    return jnp.matmul(x, w.T) + b


def core_kernels(float_dtype: Any) -> dict[str, Kernel]:
    """Name -> kernel for every core primitive, for a backend of ``float_dtype``."""
    table: dict[str, Kernel] = {**_BINARY, **_UNARY}
    table.update(
        where=where,
        cast=make_cast(float_dtype),
        relu=relu,
        leaky_relu=leaky_relu,
        gelu=gelu,
        sum=_reduction(jnp.sum),
        mean=_reduction(jnp.mean),
        max=_reduction(jnp.max),
        min=_reduction(jnp.min),
        argmax=argmax,
        softmax=softmax,
        log_softmax=log_softmax,
        matmul=jnp.matmul,
        linear=_linear,  # optional fused primitive
        transpose=transpose,
        reshape=reshape,
        flatten=flatten,
        broadcast_to=broadcast_to,
        concat=concat,
        slice=slice_,
        slice_grad=slice_grad,
    )
    table.update(nn_kernels.KERNELS)
    table.update(indexing.KERNELS)  # model-zoo primitives
    table.update(rng.KERNELS)  # random primitives: kernel(key, *inputs, **attrs)
    table.update(normalization.KERNELS)  # fused composites (normalize, normalize_grad)
    table.update(control_flow.KERNELS)  # loops and branches over sub-graphs (mithril.ir.control_flow)
    return table


__all__ = ["Kernel", "core_kernels"]
