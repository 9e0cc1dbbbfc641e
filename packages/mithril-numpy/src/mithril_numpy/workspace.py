"""What the NumPy kernels allocate beyond their outputs (``NumpyBackend.kernel_memory``).

Read off the kernels in :mod:`.conv`, :mod:`.pool`, :mod:`.windows` and :mod:`.control_flow`:
``workspace`` is the kernel's peak above its inputs and its output (every local array of a kernel
lives until it returns). Structure kernels that return views (``transpose``, ``broadcast_to``,
``slice``, and ``reshape``/``flatten`` of a dense array) allocate nothing. NumPy's own small
per-ufunc buffers (8192 elements for casting and strided operands) are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mithril.backend import KernelMemory, view_memory
from mithril.ir.control_flow import stacked_ys_bytes

from .conv import PER_SAMPLE_MIN_PIXELS
from .windows import out_size

Shape = tuple[int, ...]
_BOOL = 1


def _pair(v: Any, default: int) -> tuple[int, int]:
    if v is None:
        return default, default
    if isinstance(v, int):
        return v, v
    return int(v[0]), int(v[1])


def _padded(shape: Shape, padding: tuple[int, int]) -> int:
    """Elements of the padded copy of an NCHW array (0 when ``padding`` is none: no copy)."""
    if padding == (0, 0):
        return 0
    n, c, h, w = shape
    return n * c * (h + 2 * padding[0]) * (w + 2 * padding[1])


def _out_hw(hw: Sequence[int], kernel: tuple[int, int], attrs: Mapping[str, Any]) -> tuple[int, int]:
    stride = _pair(attrs.get("stride"), 1) if attrs.get("stride") is not None else kernel
    padding, dilation = _pair(attrs.get("padding"), 0), _pair(attrs.get("dilation"), 1)
    return (
        out_size(hw[0], kernel[0], stride[0], padding[0], dilation[0]),
        out_size(hw[1], kernel[1], stride[1], padding[1], dilation[1]),
    )


def _cols_is_view(kernel: tuple[int, int], attrs: Mapping[str, Any], per_sample: bool) -> bool:
    """A 1x1, stride-1, unpadded window view reshapes without a copy (per-sample layout only)."""
    return (
        per_sample
        and kernel == (1, 1)
        and _pair(attrs.get("stride"), 1) == (1, 1)
        and _pair(attrs.get("padding"), 0) == (0, 0)
    )


def _conv2d(x: Shape, w: Shape, attrs: Mapping[str, Any], fb: int) -> KernelMemory:
    n, c = x[:2]
    o, _, kh, kw = w
    ho, wo = _out_hw(x[2:], (kh, kw), attrs)
    per_sample = ho * wo >= PER_SAMPLE_MIN_PIXELS
    cols = 0 if _cols_is_view((kh, kw), attrs, per_sample) else n * c * kh * kw * ho * wo
    pad = _padded(x, _pair(attrs.get("padding"), 0))
    # per sample the product is the output; else the product (O, N, Ho, Wo) is copied to NCHW
    product = 0 if per_sample else n * o * ho * wo
    return KernelMemory(workspace=(pad + cols + product) * fb)


def _conv2d_input_grad(g: Shape, w: Shape, attrs: Mapping[str, Any], fb: int) -> KernelMemory:
    n, o, ho, wo = g
    _, _, kh, kw = w
    c, h, wd = (int(d) for d in attrs["input_shape"][1:])
    padding = _pair(attrs.get("padding"), 0)
    cols = n * c * kh * kw * ho * wo  # the product, (N, G, Cg*KH*KW, Ho*Wo) or (G, Cg*KH*KW, N*Ho*Wo)
    padded = n * c * (h + 2 * padding[0]) * (wd + 2 * padding[1])  # the output crops it (a view)
    if ho * wo >= PER_SAMPLE_MIN_PIXELS:
        extra = cols
    else:  # the gradient regrouped (a copy) and the product, before the padded output exists
        regrouped = 0 if n == 1 else n * o * ho * wo
        extra = max(regrouped + cols - padded, cols)
    return KernelMemory(workspace=extra * fb, output_bytes=padded * fb)


def _conv2d_weight_grad(x: Shape, g: Shape, attrs: Mapping[str, Any], fb: int) -> KernelMemory:
    n, c = x[:2]
    _, o, ho, wo = g
    _, _, kh, kw = (int(d) for d in attrs["weight_shape"])
    pad = _padded(x, _pair(attrs.get("padding"), 0))
    cols = n * c * kh * kw * ho * wo
    regrouped = 0 if n == 1 else n * o * ho * wo
    return KernelMemory(workspace=(pad + cols + regrouped) * fb)


def _max_pool2d_grad(x: Shape, g: Shape, attrs: Mapping[str, Any], fb: int) -> KernelMemory:
    padding = _pair(attrs.get("padding"), 0)
    windows = math.prod(g)
    # the -inf padded copy, the window maxima, ``taken`` and two ``hit`` masks (the consumer's and the
    # generator's next); overlapping windows also make ``grad * hit`` per offset
    extra = _padded(x, padding) * fb + windows * (fb + 3 * _BOOL)
    kernel, stride = _pair(attrs.get("kernel_size"), 1), _pair(attrs.get("stride"), 1)
    dilation = _pair(attrs.get("dilation"), 1)
    if any(s < d * (k - 1) + 1 for s, d, k in zip(stride, dilation, kernel)):
        extra += windows * fb
    n, ch, h, w = x
    out = n * ch * (h + 2 * padding[0]) * (w + 2 * padding[1]) * fb
    return KernelMemory(workspace=extra, output_bytes=out)


def _avg_pool2d_grad(g: Shape, attrs: Mapping[str, Any], fb: int) -> KernelMemory:
    n, c, h, w = (int(d) for d in attrs["input_shape"])
    padding = _pair(attrs.get("padding"), 0)
    out = n * c * (h + 2 * padding[0]) * (w + 2 * padding[1]) * fb
    return KernelMemory(workspace=math.prod(g) * fb, output_bytes=out)  # ``grad / divisor``


def kernel_memory(
    primitive: str,
    input_shapes: Sequence[Shape | None],
    attrs: Mapping[str, Any],
    float_bytes: int,
    contiguous: Sequence[bool],
    results: Sequence[Any] = (),
) -> KernelMemory:
    """The :class:`~mithril.backend.KernelMemory` of one NumPy kernel call."""
    shapes = [tuple(int(d) for d in s) if s is not None else None for s in input_shapes]
    view = view_memory(primitive, shapes[0] if shapes else None, attrs, bool(contiguous and contiguous[0]))
    if view is not None:
        return view
    fb = float_bytes
    if primitive == "scan":
        # np.stack of the listed per-step ys (mithril_numpy.control_flow)
        return KernelMemory(workspace=stacked_ys_bytes(attrs, fb, results))
    if primitive == "log_softmax" and shapes and shapes[0] is not None:
        return KernelMemory(workspace=math.prod(shapes[0]) * fb)  # the shifted input beside the output
    if len(shapes) < 1 or any(s is None for s in shapes[:2]):
        return KernelMemory()
    a = shapes[0]
    b = shapes[1] if len(shapes) > 1 else None
    assert a is not None
    if primitive == "conv2d" and b is not None:
        return _conv2d(a, b, attrs, fb)
    if primitive == "conv2d_input_grad" and b is not None:
        return _conv2d_input_grad(a, b, attrs, fb)
    if primitive == "conv2d_weight_grad" and b is not None:
        return _conv2d_weight_grad(a, b, attrs, fb)
    if primitive == "max_pool2d":
        return KernelMemory(workspace=_padded(a, _pair(attrs.get("padding"), 0)) * fb)
    if primitive == "max_pool2d_grad" and b is not None:
        return _max_pool2d_grad(a, b, attrs, fb)
    if primitive == "avg_pool2d":
        return KernelMemory(workspace=_padded(a, _pair(attrs.get("padding"), 0)) * fb)
    if primitive == "avg_pool2d_grad":
        return _avg_pool2d_grad(a, attrs, fb)
    return KernelMemory()


__all__ = ["kernel_memory"]
