"""Convolution and pooling kernels over NCHW inputs, with their gradient kernels.

Attributes are ``(height, width)`` pairs: ``stride``, ``padding`` (symmetric),
``dilation``; ``groups`` as in ``torch.nn.Conv2d``. Results equal
``torch.nn.functional.conv2d`` / ``max_pool2d`` / ``avg_pool2d`` (floor mode).

* conv2d: ``lax.conv_general_dilated`` with ``feature_group_count``.
* conv2d_input_grad / conv2d_weight_grad / avg_pool2d_grad: ``jax.linear_transpose``
  of the (linear) forward, traced abstractly, so no forward pass is computed.
* max_pool2d_grad: explicit, with torch's tie rule (see :func:`_max_pool2d_grad`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .static import hashable, static_jit

Array = jax.Array
Pair = tuple[int, int]

_NCHW = ("NCHW", "OIHW", "NCHW")


def _pads(padding: Pair) -> list[tuple[int, int]]:
    return [(padding[0], padding[0]), (padding[1], padding[1])]


def _conv(x: Array, w: Array, stride: Pair, padding: Pair, dilation: Pair, groups: int) -> Array:
    return lax.conv_general_dilated(
        x,
        w,
        window_strides=stride,
        padding=_pads(padding),
        rhs_dilation=dilation,
        dimension_numbers=_NCHW,
        feature_group_count=groups,
    )


_CONV_ATTRS = ("stride", "padding", "dilation", "groups")


@static_jit(*_CONV_ATTRS)
def _conv2d(x: Array, w: Array, *, stride: Pair, padding: Pair, dilation: Pair, groups: int) -> Array:
    return _conv(x, w, stride, padding, dilation, groups)


@static_jit("input_shape", *_CONV_ATTRS)
def _conv2d_input_grad(
    g: Array, w: Array, *, input_shape: tuple[int, ...], stride: Pair, padding: Pair, dilation: Pair, groups: int
) -> Array:
    """Transposed convolution written out: dilate ``g`` by the stride, pad, correlate with the flipped kernel.

    (``jax.linear_transpose`` of the forward aborts the process inside XLA for some uneven
    stride/kernel/size combinations; this form has no such case.)
    """
    o, c_g, kh, kw = w.shape
    c = input_shape[1]
    # [O, C/G, kh, kw] -> [C, O/G, kh, kw], flipped in space
    wt = w.reshape(groups, o // groups, c_g, kh, kw).transpose(0, 2, 1, 3, 4).reshape(c, o // groups, kh, kw)
    wt = wt[:, :, ::-1, ::-1]
    pads = [(0, 0, 0), (0, 0, 0)]
    for i, k in enumerate((kh, kw)):
        reach = dilation[i] * (k - 1)
        n_out = g.shape[2 + i]
        extra = input_shape[2 + i] + 2 * padding[i] - reach - 1 - (n_out - 1) * stride[i]
        pads.append((reach - padding[i], reach - padding[i] + extra, stride[i] - 1))
    gp = lax.pad(g, np.array(0, dtype=g.dtype), pads)
    return lax.conv_general_dilated(
        gp,
        wt,
        window_strides=(1, 1),
        padding=[(0, 0), (0, 0)],
        rhs_dilation=dilation,
        dimension_numbers=_NCHW,
        feature_group_count=groups,
    )


@static_jit("weight_shape", *_CONV_ATTRS)
def _conv2d_weight_grad(
    x: Array, g: Array, *, weight_shape: tuple[int, ...], stride: Pair, padding: Pair, dilation: Pair, groups: int
) -> Array:
    transpose = jax.linear_transpose(
        lambda w: _conv(x, w, stride, padding, dilation, groups), jax.ShapeDtypeStruct(weight_shape, g.dtype)
    )
    return transpose(g)[0]


def conv2d(
    x: Array,
    w: Array,
    *,
    stride: Sequence[int] = (1, 1),
    padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
    groups: int = 1,
) -> Array:
    """Cross-correlation of an NCHW input with an OIHW weight (torch ``F.conv2d``, no bias)."""
    return _conv2d(
        x, w, stride=hashable(stride), padding=hashable(padding), dilation=hashable(dilation), groups=int(groups)
    )


def conv2d_input_grad(
    g: Array,
    w: Array,
    *,
    input_shape: Sequence[int],
    stride: Sequence[int] = (1, 1),
    padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
    groups: int = 1,
) -> Array:
    """Gradient of conv2d wrt its input, given the output cotangent ``g``."""
    return _conv2d_input_grad(
        g,
        w,
        input_shape=hashable(input_shape),
        stride=hashable(stride),
        padding=hashable(padding),
        dilation=hashable(dilation),
        groups=int(groups),
    )


def conv2d_weight_grad(
    x: Array,
    g: Array,
    *,
    weight_shape: Sequence[int],
    stride: Sequence[int] = (1, 1),
    padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
    groups: int = 1,
) -> Array:
    """Gradient of conv2d wrt its weight, given the input ``x`` and output cotangent ``g``."""
    return _conv2d_weight_grad(
        x,
        g,
        weight_shape=hashable(weight_shape),
        stride=hashable(stride),
        padding=hashable(padding),
        dilation=hashable(dilation),
        groups=int(groups),
    )


# ------------------------------------------------------------------ pooling
def _window(kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair = (1, 1)) -> dict[str, Any]:
    return dict(
        window_dimensions=(1, 1, *kernel_size),
        window_strides=(1, 1, *stride),
        padding=((0, 0), (0, 0), *_pads(padding)),
        window_dilation=(1, 1, *dilation),
    )


_MAX_ATTRS = ("kernel_size", "stride", "padding", "dilation")
_AVG_ATTRS = ("kernel_size", "stride", "padding", "count_include_pad")


@static_jit(*_MAX_ATTRS)
def _max_pool2d(x: Array, *, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Array:
    init = np.array(-np.inf, dtype=x.dtype)
    return lax.reduce_window(x, init, lax.max, **_window(kernel_size, stride, padding, dilation))


@static_jit(*_MAX_ATTRS)
def _max_pool2d_grad(x: Array, g: Array, *, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Array:
    """Route each window's cotangent to one input element, with torch's rule.

    Torch scans a window's in-bounds elements in row-major order and keeps the
    element when ``value > best or isnan(value)``: the first maximum wins a tie,
    the last NaN wins over everything, and a window of -inf picks its first
    in-bounds element. Padding never receives gradient. Windows are gathered as
    ``kh*kw`` strided slices (offset ``k`` = window row-major position), the
    winning offset is chosen per window, and each offset's cotangents are
    scattered back with an interior-padded ``lax.pad``.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    n, c, h, w = x.shape
    ho, wo = g.shape[2], g.shape[3]
    hp, wp = h + 2 * ph, w + 2 * pw
    xp = jnp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-jnp.inf)
    inside = np.pad(np.ones((h, w), dtype=bool), ((ph, ph), (pw, pw)))
    offsets = [(i * dh, j * dw) for i in range(kh) for j in range(kw)]

    def rows_cols(r0: int, c0: int) -> tuple[slice, slice]:
        return slice(r0, r0 + sh * (ho - 1) + 1, sh), slice(c0, c0 + sw * (wo - 1) + 1, sw)

    patches = jnp.stack([xp[:, :, rs, cs] for rs, cs in (rows_cols(r0, c0) for r0, c0 in offsets)])
    valid = jnp.asarray(np.stack([inside[rows_cols(r0, c0)] for r0, c0 in offsets]))[:, None, None]
    best = jnp.max(jnp.where(valid, patches, -jnp.inf), axis=0)
    first_max = jnp.argmax((patches == best) & valid, axis=0)
    is_nan = jnp.isnan(patches) & valid
    last_nan = len(offsets) - 1 - jnp.argmax(is_nan[::-1], axis=0)
    chosen = jnp.where(jnp.any(is_nan, axis=0), last_nan, first_max)

    zero = jnp.zeros((), g.dtype)
    grad = jnp.zeros((n, c, hp, wp), g.dtype)
    for k, (r0, c0) in enumerate(offsets):
        part = jnp.where(chosen == k, g, zero)
        grad = grad + lax.pad(
            part,
            zero,
            [
                (0, 0, 0),
                (0, 0, 0),
                (r0, hp - (r0 + sh * (ho - 1) + 1), sh - 1),
                (c0, wp - (c0 + sw * (wo - 1) + 1), sw - 1),
            ],
        )
    return grad[:, :, ph : ph + h, pw : pw + w]


def _avg_pool(x: Array, kernel_size: Pair, stride: Pair, padding: Pair, count_include_pad: bool) -> Array:
    window = _window(kernel_size, stride, padding)
    total = lax.reduce_window(x, np.zeros((), dtype=x.dtype), lax.add, **window)
    if count_include_pad:
        return total / np.array(kernel_size[0] * kernel_size[1], dtype=x.dtype)
    rows = _in_bounds(x.shape[2], total.shape[2], kernel_size[0], stride[0], padding[0])
    cols = _in_bounds(x.shape[3], total.shape[3], kernel_size[1], stride[1], padding[1])
    return total / np.outer(rows, cols).astype(x.dtype)


def _in_bounds(size: int, out_size: int, k: int, s: int, p: int) -> np.ndarray:
    """Per output position, how many of its window's ``k`` positions are inside the input."""
    starts = np.arange(out_size) * s - p
    return np.minimum(starts + k, size) - np.maximum(starts, 0)


@static_jit(*_AVG_ATTRS)
def _avg_pool2d(x: Array, *, kernel_size: Pair, stride: Pair, padding: Pair, count_include_pad: bool) -> Array:
    return _avg_pool(x, kernel_size, stride, padding, count_include_pad)


@static_jit("input_shape", *_AVG_ATTRS)
def _avg_pool2d_grad(
    g: Array, *, input_shape: tuple[int, ...], kernel_size: Pair, stride: Pair, padding: Pair, count_include_pad: bool
) -> Array:
    transpose = jax.linear_transpose(
        lambda x: _avg_pool(x, kernel_size, stride, padding, count_include_pad),
        jax.ShapeDtypeStruct(input_shape, g.dtype),
    )
    return transpose(g)[0]


def max_pool2d(
    x: Array,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
) -> Array:
    """Max over windows with -inf padding (torch ``F.max_pool2d``, ceil_mode=False)."""
    return _max_pool2d(
        x,
        kernel_size=hashable(kernel_size),
        stride=hashable(stride),
        padding=hashable(padding),
        dilation=hashable(dilation),
    )


def max_pool2d_grad(
    x: Array,
    g: Array,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
) -> Array:
    """Gradient of max_pool2d wrt its input: each window's cotangent to its first max (torch's rule)."""
    return _max_pool2d_grad(
        x,
        g,
        kernel_size=hashable(kernel_size),
        stride=hashable(stride),
        padding=hashable(padding),
        dilation=hashable(dilation),
    )


def avg_pool2d(
    x: Array,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int] = (0, 0),
    count_include_pad: bool = True,
) -> Array:
    """Mean over windows (torch ``F.avg_pool2d``, ceil_mode=False)."""
    return _avg_pool2d(
        x,
        kernel_size=hashable(kernel_size),
        stride=hashable(stride),
        padding=hashable(padding),
        count_include_pad=bool(count_include_pad),
    )


def avg_pool2d_grad(
    g: Array,
    *,
    input_shape: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int] = (0, 0),
    count_include_pad: bool = True,
) -> Array:
    """Gradient of avg_pool2d wrt its input, given the output cotangent ``g``."""
    return _avg_pool2d_grad(
        g,
        input_shape=hashable(input_shape),
        kernel_size=hashable(kernel_size),
        stride=hashable(stride),
        padding=hashable(padding),
        count_include_pad=bool(count_include_pad),
    )


KERNELS: dict[str, Callable[..., Array]] = {
    "conv2d": conv2d,
    "conv2d_input_grad": conv2d_input_grad,
    "conv2d_weight_grad": conv2d_weight_grad,
    "max_pool2d": max_pool2d,
    "max_pool2d_grad": max_pool2d_grad,
    "avg_pool2d": avg_pool2d,
    "avg_pool2d_grad": avg_pool2d_grad,
}

__all__ = [
    "KERNELS",
    "avg_pool2d",
    "avg_pool2d_grad",
    "conv2d",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "max_pool2d",
    "max_pool2d_grad",
]
