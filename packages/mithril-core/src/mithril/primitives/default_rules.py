"""Default rules of the gradient primitives, written in forward primitives.

The gradient rules of ``conv2d``, ``max_pool2d``, ``avg_pool2d`` and ``slice`` emit the
primitives ``conv2d_input_grad``, ``conv2d_weight_grad``, ``max_pool2d_grad``,
``avg_pool2d_grad`` and ``slice_grad``. Each of them is a *composite*: a backend with a
kernel for it keeps the node as one kernel call (NumPy, PyTorch and JAX have fast ones);
a backend without one gets the expansion below (:mod:`mithril.ir.passes.expand`, run again
after autodiff), made of forward primitives only. So a backend that implements the forward
kernels differentiates convolutions, pooling and slicing with nothing more.

* ``slice_grad``: zeros with ``grad`` at the sliced positions, built axis by axis from
  ``slice`` (to reverse a negative step), ``reshape`` and ``concat`` with zeros (exact: no
  arithmetic touches the values);
* ``conv2d_input_grad``: ``conv_transpose2d(grad, weight)`` with the ``output_padding``
  that gives back the input's size (the transposed convolution *is* this gradient);
* ``conv2d_weight_grad``: a ``conv2d`` of the input, batch and channel axes swapped, with
  the output gradient as its kernel (the forward's stride becomes the dilation and the
  dilation the stride), cropped to the weight's size; groups go to the batch axis;
* ``avg_pool2d_grad``: ``grad`` divided by each window's divisor, scattered back by a
  depthwise ``conv_transpose2d`` with a kernel of ones;
* ``max_pool2d_grad``: for each kernel offset, whether that tap holds its window's first
  maximum (``equal`` with the recomputed ``max_pool2d``; the last NaN where a window has
  one, as torch), the cotangents masked by it stacked as channels and scattered back by
  one ``conv_transpose2d`` with a one-hot kernel per offset.

The convolution-based rules multiply by exact 0/1 (or the pooling divisor) only; a
backend whose convolutions compute in reduced precision (TF32) gets gradients of that
precision, as it does for ``conv2d`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ..ir.graph import GraphBuilder, Node, Value

_ZERO = {"float": np.float64(0.0), "int": np.int64(0), "bool": np.bool_(False)}


def _zeros(b: GraphBuilder, kind: str | None, shape: Sequence[int]) -> Value:
    return b.emit("broadcast_to", b.const(_ZERO[kind or "float"]), shape=tuple(shape))


def _along(axis: int, start: Any = None, stop: Any = None, step: Any = None) -> dict[str, Any]:
    """``slice`` attributes selecting ``start:stop:step`` on ``axis`` (the leading axes whole)."""
    return {"starts": (None,) * axis + (start,), "stops": (None,) * axis + (stop,), "steps": (None,) * axis + (step,)}


def _unslice_axis(b: GraphBuilder, v: Value, axis: int, n: int, sl: slice) -> Value:
    """``v`` (the slice ``sl`` of an axis of length ``n``) placed into zeros of length ``n`` on ``axis``."""
    idx = range(n)[sl]
    shape = list(v.known_shape)
    m = len(idx)
    if m == n and list(idx) == list(range(n)):
        return v
    if idx.step < 0:  # reverse: the positions become ascending
        v = b.emit("slice", v, **_along(axis, None, None, -1))
        lo, step = idx[-1], -idx.step
    else:
        lo, step = idx[0], idx.step
    if step > 1 and m > 1:  # interleave step - 1 zeros after every element, drop the trailing ones
        col = shape[:axis] + [m, 1] + shape[axis + 1 :]
        gap = shape[:axis] + [m, step - 1] + shape[axis + 1 :]
        v = b.emit("concat", b.emit("reshape", v, shape=tuple(col)), _zeros(b, v.kind, gap), axis=axis + 1)
        v = b.emit("reshape", v, shape=tuple(shape[:axis] + [m * step] + shape[axis + 1 :]))
        v = b.emit("slice", v, **_along(axis, None, (m - 1) * step + 1, None))
    span = (m - 1) * step + 1
    parts = []
    if lo:
        parts.append(_zeros(b, v.kind, shape[:axis] + [lo] + shape[axis + 1 :]))
    parts.append(v)
    if n - lo - span:
        parts.append(_zeros(b, v.kind, shape[:axis] + [n - lo - span] + shape[axis + 1 :]))
    return parts[0] if len(parts) == 1 else b.emit("concat", *parts, axis=axis)


def expand_slice_grad(b: GraphBuilder, node: Node) -> Value:
    (g,) = node.inputs
    a = node.attrs
    full = tuple(a["input_shape"])
    slices = [slice(*t) for t in zip(a["starts"], a["stops"], a["steps"])]
    if any(len(range(n)[s]) == 0 for n, s in zip(full, slices)):
        return _zeros(b, g.kind, full)
    v = g
    for axis, (n, s) in enumerate(zip(full, slices)):
        v = _unslice_axis(b, v, axis, n, s)
    return v


# ------------------------------------------------------------------ convolution
def _output_padding(
    size: Sequence[int],
    out: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> tuple[int, int]:
    """conv_transpose2d's output_padding that maps ``out`` positions back onto ``size`` (< stride)."""
    h, w = (size[i] - ((out[i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (kernel[i] - 1) + 1) for i in range(2))
    return h, w


def expand_conv2d_input_grad(b: GraphBuilder, node: Node) -> Value:
    g, w = node.inputs
    a = node.attrs
    op = _output_padding(
        a["input_shape"][2:],
        g.known_shape[2:],
        w.known_shape[2:],
        a["stride"],
        a["padding"],
        a["dilation"],
    )
    return b.emit(
        "conv_transpose2d",
        g,
        w,
        stride=a["stride"],
        padding=a["padding"],
        output_padding=op,
        dilation=a["dilation"],
        groups=a["groups"],
    )


def expand_conv2d_weight_grad(b: GraphBuilder, node: Node) -> Value:
    x, g = node.inputs
    a = node.attrs
    groups = a["groups"]
    n, _c, h, wd = x.known_shape
    _o, cg, kh, kw = a["weight_shape"]
    if groups == 1:
        xt = b.emit("transpose", x, axes=(1, 0, 2, 3))  # [C, N, H, W]: channels as the batch
    else:  # [C/G, G*N, H, W]: group k's channel c reads the batch as input channels k*N .. k*N + N - 1
        xt = b.emit("reshape", x, shape=(n, groups, cg, h, wd))
        xt = b.emit("transpose", xt, axes=(2, 1, 0, 3, 4))
        xt = b.emit("reshape", xt, shape=(cg, groups * n, h, wd))
    gt = b.emit("transpose", g, axes=(1, 0, 2, 3))  # [O, N, Ho, Wo]: the kernel, N input channels per group
    r = b.emit("conv2d", xt, gt, stride=a["dilation"], padding=a["padding"], dilation=a["stride"], groups=groups)
    if tuple(r.known_shape[2:]) != (kh, kw):
        r = b.emit(
            "slice", r, starts=(None, None, None, None), stops=(None, None, kh, kw), steps=(None, None, None, None)
        )
    return b.emit("transpose", r, axes=(1, 0, 2, 3))


# ---------------------------------------------------------------------- pooling
def _scatter_windows(
    b: GraphBuilder,
    taps: Value,
    weight: np.ndarray,
    input_shape: Sequence[int],
    attrs: dict[str, Any],
    dilation: Sequence[int],
) -> Value:
    """``taps [N*C, K, Ho, Wo]`` added back at their input positions by conv_transpose2d with ``weight``."""
    n, c, h, w = input_shape
    op = _output_padding(
        (h, w),
        taps.known_shape[2:],
        attrs["kernel_size"],
        attrs["stride"],
        attrs["padding"],
        dilation,
    )
    out = b.emit(
        "conv_transpose2d",
        taps,
        b.const(weight),
        stride=attrs["stride"],
        padding=attrs["padding"],
        output_padding=op,
        dilation=tuple(dilation),
        groups=1,
    )
    return b.emit("reshape", out, shape=(n, c, h, w))


def pool_divisor(
    hw: Sequence[int],
    out_hw: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    count_include_pad: bool,
) -> float | np.ndarray:
    """What each average-pooling window's sum is divided by: KH*KW, or its number of unpadded elements."""
    if count_include_pad:
        return float(kernel_size[0] * kernel_size[1])
    counts = []
    for n, o, k, s, p in zip(hw, out_hw, kernel_size, stride, padding):
        start = np.arange(o) * s - p
        counts.append(np.minimum(start + k, n) - np.maximum(start, 0))
    divisor: np.ndarray = np.multiply.outer(counts[0], counts[1]).astype(np.float64)
    return divisor


def expand_avg_pool2d_grad(b: GraphBuilder, node: Node) -> Value:
    (g,) = node.inputs
    a = node.attrs
    n, c, h, w = a["input_shape"]
    ho, wo = g.known_shape[2:]
    kh, kw = a["kernel_size"]
    share = b.emit(
        "div",
        g,
        b.const(pool_divisor((h, w), (ho, wo), a["kernel_size"], a["stride"], a["padding"], a["count_include_pad"])),
    )
    taps = b.emit("reshape", share, shape=(n * c, 1, ho, wo))
    return _scatter_windows(b, taps, np.ones((1, 1, kh, kw)), a["input_shape"], a, (1, 1))


def expand_max_pool2d_grad(b: GraphBuilder, node: Node) -> Value:
    x, g = node.inputs
    a = node.attrs
    n, c, h, w = x.known_shape
    ho, wo = g.known_shape[2:]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel_size"], a["stride"], a["padding"], a["dilation"]
    pooled = b.emit("max_pool2d", x, **a)
    padded = x
    if ph or pw:  # -inf padding, as max_pool2d's: it never holds a window's maximum
        ninf = b.const(np.float64(-np.inf))
        parts = [b.emit("broadcast_to", ninf, shape=(n, c, ph, w))] if ph else []
        padded = b.emit("concat", *parts, x, *parts, axis=2) if ph else x
        side = [b.emit("broadcast_to", ninf, shape=(n, c, h + 2 * ph, pw))] if pw else []
        padded = b.emit("concat", *side, padded, *side, axis=3) if pw else padded
    one, zero = b.const(1.0), b.const(0.0)
    offsets = [(i, j) for i in range(kh) for j in range(kw)]
    taps = []
    for i, j in offsets:
        taps.append(
            b.emit(
                "slice",
                padded,
                starts=(None, None, i * dh, j * dw),
                stops=(None, None, i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1),
                steps=(None, None, sh, sw),
            )
        )
    hits: list[Any] = [None] * len(taps)
    taken = None  # windows whose first maximum was found at an earlier offset (1.0) or not (0.0)
    for k, tap in enumerate(taps):
        is_max = b.emit("equal", tap, pooled)
        hits[k] = b.emit("where", is_max, one if taken is None else b.emit("sub", one, taken), zero)
        if k + 1 < len(taps):
            taken = hits[k] if taken is None else b.emit("add", taken, hits[k])
    later = None  # a window holding NaN: its cotangent goes to the last NaN (torch's rule)
    for k in reversed(range(len(taps))):
        is_nan = b.emit("not_equal", taps[k], taps[k])
        last = b.emit("where", is_nan, one if later is None else b.emit("sub", one, later), zero)
        hits[k] = b.emit("add", hits[k], last)
        if k:
            later = last if later is None else b.emit("add", later, last)
    masked = [b.emit("reshape", b.emit("mul", g, hit), shape=(n * c, 1, ho, wo)) for hit in hits]
    stacked = masked[0] if len(masked) == 1 else b.emit("concat", *masked, axis=1)
    onehot = np.zeros((len(offsets), 1, kh, kw))
    for k, (i, j) in enumerate(offsets):
        onehot[k, 0, i, j] = 1.0
    return _scatter_windows(b, stacked, onehot, x.known_shape, a, (dh, dw))


#: the gradient primitives with a default rule here, by name
DEFAULT_RULES = {
    "slice_grad": expand_slice_grad,
    "conv2d_input_grad": expand_conv2d_input_grad,
    "conv2d_weight_grad": expand_conv2d_weight_grad,
    "avg_pool2d_grad": expand_avg_pool2d_grad,
    "max_pool2d_grad": expand_max_pool2d_grad,
}

__all__ = ["DEFAULT_RULES", "pool_divisor"]
