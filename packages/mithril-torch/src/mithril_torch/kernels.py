"""Torch kernels for every core primitive.

Contract (see :mod:`mithril.primitives`): ``kernel(*inputs, **attrs) -> tensor``,
inputs in the order of ``Primitive.inputs`` (``concat`` takes any number), every
attribute passed by keyword. Semantics follow NumPy / ``torch.nn.functional``.

These run once per node in generated code, so where a torch function already has
the right signature it is bound directly; the rest are thin wrappers. Arithmetic
and comparisons go through :mod:`operator`, which is as fast as ``torch.add`` and
also accepts a Python scalar on either side.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from . import control_flow, indexing, normalization, pooling, rng

Kernel = Callable[..., Any]
Axes = tuple[int, ...] | None
Pair = tuple[int, int]

_aten = torch.ops.aten


# ------------------------------------------------------------- elementwise
def leaky_relu(x: torch.Tensor, *, slope: float = 0.01) -> torch.Tensor:
    """``x if x > 0 else slope * x``."""
    return F.leaky_relu(x, slope)


def make_cast(float_dtype: torch.dtype) -> Kernel:
    """``cast(x, kind)`` to the backend's float dtype, int64 or bool."""
    targets = {"float": float_dtype, "int": torch.int64, "bool": torch.bool}

    def cast(x: torch.Tensor, *, kind: str = "float") -> torch.Tensor:
        try:
            target = targets[kind]
        except KeyError:
            raise ValueError(f"cast: kind must be 'float', 'int' or 'bool', got {kind!r}") from None
        return x.to(target)

    return cast


# ---------------------------------------------------------------- structure
def transpose(x: torch.Tensor, *, axes: Sequence[int] | None = None) -> torch.Tensor:
    """Permute axes; ``None`` reverses them (as ``np.transpose``)."""
    if axes is None:
        # a tuple, not *range(n - 1, -1, -1): dynamo (torch 2.13) passes that range's own arguments
        # (1, -1, -1) to permute when it unpacks it, a graph break and an eager fallback
        return x.permute(tuple(range(x.ndim))[::-1])
    return x.permute(*axes)


def reshape(x: torch.Tensor, *, shape: Sequence[int]) -> torch.Tensor:
    return torch.reshape(x, tuple(shape))


def flatten(x: torch.Tensor, *, start_axis: int = 1, end_axis: int = -1) -> torch.Tensor:
    return torch.flatten(x, start_axis, end_axis)


def broadcast_to(x: torch.Tensor, *, shape: Sequence[int]) -> torch.Tensor:
    return torch.broadcast_to(x, tuple(shape))


def concat(*xs: torch.Tensor, axis: int = 0) -> torch.Tensor:
    return torch.cat(xs, axis)


SliceAttr = Sequence["int | None"]


@functools.lru_cache(maxsize=1024)
def _slice_plan(
    shape: tuple[int, ...],
    starts: tuple[int | None, ...],
    stops: tuple[int | None, ...],
    steps: tuple[int | None, ...],
) -> tuple[tuple[slice, ...], tuple[int, ...]]:
    """Positive-step slices selecting the same elements as the given ones, and the
    axes to flip afterwards (torch has no negative steps)."""
    slices: list[slice] = []
    flips: list[int] = []
    for axis, (a, z, s) in enumerate(zip(starts, stops, steps)):
        if s is None or s > 0:
            slices.append(slice(a, z, s))
            continue
        r = range(shape[axis])[slice(a, z, s)]
        if len(r) == 0:
            slices.append(slice(0, 0))
        else:
            slices.append(slice(r[-1], r[0] + 1, -s))
            flips.append(axis)
    return tuple(slices), tuple(flips)


def _has_negative_step(steps: SliceAttr) -> bool:
    return any(s is not None and s < 0 for s in steps)


def slice_(x: torch.Tensor, *, starts: SliceAttr, stops: SliceAttr, steps: SliceAttr) -> torch.Tensor:
    """``x[starts[0]:stops[0]:steps[0], ...]`` over the leading axes; negative steps allowed."""
    if not _has_negative_step(steps):
        return x[tuple(map(slice, starts, stops, steps))]
    slices, flips = _slice_plan(tuple(x.shape), tuple(starts), tuple(stops), tuple(steps))
    out = x[slices]
    return out.flip(flips) if flips else out


def slice_grad(
    grad: torch.Tensor, *, input_shape: Sequence[int], starts: SliceAttr, stops: SliceAttr, steps: SliceAttr
) -> torch.Tensor:
    """``zeros(input_shape)`` with ``grad`` written at the slice (the transpose of :func:`slice_`)."""
    out = grad.new_zeros(tuple(input_shape))
    if not _has_negative_step(steps):
        out[tuple(map(slice, starts, stops, steps))] = grad
        return out
    slices, flips = _slice_plan(tuple(input_shape), tuple(starts), tuple(stops), tuple(steps))
    out[slices] = grad.flip(flips) if flips else grad
    return out


# --------------------------------------------------------------- reductions
def _reduction(fn: Callable[..., torch.Tensor]) -> Kernel:
    """A reduction over ``axis`` (tuple of ints, or None for all), NumPy-style."""

    def kernel(x: torch.Tensor, *, axis: Axes = None, keepdims: bool = False) -> torch.Tensor:
        if axis is None:
            return fn(x, dim=None, keepdim=keepdims) if keepdims else fn(x)
        if len(axis) == 0:  # NumPy: reducing over no axes is the identity (torch would reduce all)
            return x
        return fn(x, dim=axis, keepdim=keepdims)

    kernel.__name__ = kernel.__qualname__ = getattr(fn, "__name__", "reduction")
    return kernel


def _amax(x: torch.Tensor, dim: Any = None, keepdim: bool = False) -> torch.Tensor:
    return torch.amax(x, dim=() if dim is None else dim, keepdim=keepdim)


def _amin(x: torch.Tensor, dim: Any = None, keepdim: bool = False) -> torch.Tensor:
    return torch.amin(x, dim=() if dim is None else dim, keepdim=keepdim)


def argmax(x: torch.Tensor, *, axis: Axes = (-1,), keepdims: bool = False) -> torch.Tensor:
    """Index (int64) of the max over one axis (a 1-tuple), or over everything for ``None``."""
    if axis is None:
        out = torch.argmax(x)
        return out.reshape((1,) * x.ndim) if keepdims else out
    (ax,) = axis
    return torch.argmax(x, dim=ax, keepdim=keepdims)


def softmax(x: torch.Tensor, *, axis: int = -1) -> torch.Tensor:
    return torch.softmax(x, axis)


def log_softmax(x: torch.Tensor, *, axis: int = -1) -> torch.Tensor:
    return torch.log_softmax(x, axis)


# ----------------------------------------------------------- convolution
def conv2d_input_grad(
    grad: torch.Tensor,
    weight: torch.Tensor,
    *,
    input_shape: Sequence[int],
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
    groups: int = 1,
) -> torch.Tensor:
    """Gradient of conv2d wrt its input (as ``torch.nn.grad.conv2d_input``)."""
    shape_only = grad.new_empty(1).expand(tuple(input_shape))
    return _aten.convolution_backward.default(
        grad, shape_only, weight, None, stride, padding, dilation, False, (0, 0), groups, (True, False, False)
    )[0]


def conv2d_weight_grad(
    x: torch.Tensor,
    grad: torch.Tensor,
    *,
    weight_shape: Sequence[int],
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
    groups: int = 1,
) -> torch.Tensor:
    """Gradient of conv2d wrt its weight (as ``torch.nn.grad.conv2d_weight``)."""
    shape_only = grad.new_empty(1).expand(tuple(weight_shape))
    return _aten.convolution_backward.default(
        grad, x, shape_only, None, stride, padding, dilation, False, (0, 0), groups, (False, True, False)
    )[1]


def conv2d_backward(
    x: torch.Tensor,
    weight: torch.Tensor,
    grad: torch.Tensor,
    *,
    wanted: tuple[str, ...],
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
    groups: int = 1,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Input, weight and bias gradients of conv2d in one ``convolution_backward`` (None where not wanted)."""
    mask = ("input" in wanted, "weight" in wanted, "bias" in wanted)
    return tuple(
        _aten.convolution_backward.default(
            grad,
            x,
            weight,
            [weight.shape[0]] if mask[2] else None,
            stride,
            padding,
            dilation,
            False,
            (0, 0),
            groups,
            mask,
        )
    )


# ---------------------------------------------------------------- pooling
def max_pool2d_grad(
    x: torch.Tensor,
    grad: torch.Tensor,
    *,
    kernel_size: Pair,
    stride: Pair | None,
    padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
) -> torch.Tensor:
    """Gradient of max_pool2d wrt its input: each window's grad goes to its max."""
    stride = kernel_size if stride is None else stride
    _, indices = _aten.max_pool2d_with_indices.default(x, kernel_size, stride, padding, dilation, False)
    return _aten.max_pool2d_with_indices_backward.default(
        grad, x, kernel_size, stride, padding, dilation, False, indices
    )


def avg_pool2d_grad(
    grad: torch.Tensor,
    *,
    input_shape: Sequence[int],
    kernel_size: Pair,
    stride: Pair | None,
    padding: Pair = (0, 0),
    count_include_pad: bool = True,
) -> torch.Tensor:
    """Gradient of avg_pool2d wrt its input."""
    stride = kernel_size if stride is None else stride
    shape_only = grad.new_empty(tuple(input_shape))  # a real (uninitialised) tensor: its layout sets the output's
    return _aten.avg_pool2d_backward.default(
        grad, shape_only, kernel_size, stride, padding, False, count_include_pad, None
    )


# ------------------------------------------------------------------ table
STATIC_KERNELS: dict[str, Kernel] = {
    # arithmetic and comparisons (broadcasting)
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "pow": operator.pow,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
    "greater": operator.gt,
    "greater_equal": operator.ge,
    "less": operator.lt,
    "less_equal": operator.le,
    "equal": operator.eq,
    "not_equal": operator.ne,
    "where": torch.where,
    # unary
    "neg": torch.neg,
    "abs": torch.abs,
    "sign": torch.sign,
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "sin": torch.sin,
    "cos": torch.cos,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "erf": torch.erf,
    "leaky_relu": leaky_relu,
    "gelu": F.gelu,  # keyword `approximate` matches
    # structure
    "matmul": torch.matmul,
    "linear": F.linear,  # optional fused primitive
    "transpose": transpose,
    "reshape": reshape,
    "flatten": flatten,
    "broadcast_to": broadcast_to,
    "concat": concat,
    "slice": slice_,
    "slice_grad": slice_grad,
    # reductions
    "sum": _reduction(torch.sum),
    "mean": _reduction(torch.mean),
    "max": _reduction(_amax),
    "min": _reduction(_amin),
    "argmax": argmax,
    "softmax": softmax,
    "log_softmax": log_softmax,
    # nn: keywords stride/padding/dilation/groups, kernel_size, count_include_pad match torch's
    "conv2d": torch.conv2d,
    "conv2d_input_grad": conv2d_input_grad,
    "conv2d_weight_grad": conv2d_weight_grad,
    "conv2d_backward": conv2d_backward,
    "max_pool2d": torch.max_pool2d,
    "max_pool2d_grad": max_pool2d_grad,
    "max_pool2d_with_indices": pooling.max_pool2d_with_indices,
    "max_pool2d_grad_indices": pooling.max_pool2d_grad_indices,
    "avg_pool2d": F.avg_pool2d,
    "avg_pool2d_grad": avg_pool2d_grad,
}
"""Kernels that do not depend on the backend's dtype or device."""


def make_kernels(float_dtype: torch.dtype) -> dict[str, Kernel]:
    """The kernel table of a backend whose float dtype is ``float_dtype``."""
    table = dict(STATIC_KERNELS)
    table.update(indexing.KERNELS)  # model-zoo primitives
    table.update(rng.KERNELS)  # random primitives: kernel(key, *inputs, **attrs)
    table.update(normalization.KERNELS)  # fused composites (normalize, normalize_grad)
    table.update(control_flow.KERNELS)  # loops and branches over sub-graphs (mithril.ir.control_flow)
    table["cast"] = make_cast(float_dtype)
    return table
