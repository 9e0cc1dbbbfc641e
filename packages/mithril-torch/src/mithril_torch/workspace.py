"""What the torch kernels allocate beyond their outputs (``TorchBackend.kernel_memory``).

Declared only where the kernel's own code shows it (:mod:`.kernels`, :mod:`.normalization`):
structure kernels that return views, ``max_pool2d_grad``'s recomputed pooling and indices, the
per-step ys a ``scan`` lists before stacking them, and
the results of a multi-result kernel the graph leaves unread (made, then dropped). What ATen and
cuDNN allocate inside one operator (cuDNN's convolution workspace, chosen by its heuristics for
the device and shapes) is not knowable from shapes and is not counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mithril.backend import KernelMemory, view_memory
from mithril.ir.control_flow import stacked_ys_bytes

Shape = tuple[int, ...]
_INDEX = 8  # int64 indices (eager)


def _pair(v: Any, default: int) -> tuple[int, int]:
    if v is None:
        return default, default
    if isinstance(v, int):
        return v, v
    return int(v[0]), int(v[1])


def _pooled(x: Shape, attrs: Mapping[str, Any]) -> int:
    """Elements of max_pool2d's output (floor mode)."""
    kernel = _pair(attrs.get("kernel_size"), 1)
    stride = _pair(attrs.get("stride"), 1) if attrs.get("stride") is not None else kernel
    padding, dilation = _pair(attrs.get("padding"), 0), _pair(attrs.get("dilation"), 1)
    hw = [(x[2 + i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1 for i in range(2)]
    return x[0] * x[1] * hw[0] * hw[1]


def _reduced(x: Shape, axes: Sequence[int]) -> int:
    keep = {a % len(x) for a in axes}
    return math.prod(1 if i in keep else d for i, d in enumerate(x))


def _unread(
    primitive: str, shapes: Sequence[Shape | None], attrs: Mapping[str, Any], fb: int, results: Sequence[Any]
) -> int:
    """Bytes of the results a multi-result kernel makes that no node reads."""
    if not results or not shapes or shapes[0] is None:
        return 0
    x = shapes[0]
    sizes: dict[str, int] = {}
    if primitive in ("normalize", "normalize_affine"):
        stats = _reduced(x, attrs.get("axes", ())) * fb
        sizes = {"output": math.prod(x) * fb, "mean": stats, "rstd": stats}
    elif primitive == "normalize_affine_grad" and len(shapes) > 1 and shapes[1] is not None:
        sizes = {"input": math.prod(x) * fb, "weight": math.prod(shapes[1]) * fb, "bias": math.prod(shapes[1]) * fb}
    elif primitive == "max_pool2d_with_indices":
        n = _pooled(x, attrs)
        sizes = {"output": n * fb, "indices": n * _INDEX}
    return sum(b for r, b in sizes.items() if r not in results)


def kernel_memory(
    primitive: str,
    input_shapes: Sequence[Shape | None],
    attrs: Mapping[str, Any],
    float_bytes: int,
    contiguous: Sequence[bool],
    results: Sequence[Any] = (),
) -> KernelMemory:
    """The :class:`~mithril.backend.KernelMemory` of one torch kernel call (see the module docstring)."""
    shapes = [tuple(int(d) for d in s) if s is not None else None for s in input_shapes]
    view = view_memory(
        primitive, shapes[0] if shapes else None, attrs, bool(contiguous and contiguous[0]), negative_steps_copy=True
    )
    if view is not None:
        return view
    if primitive == "scan":  # torch.stack of the listed per-step ys (mithril_torch.control_flow)
        return KernelMemory(workspace=stacked_ys_bytes(attrs, float_bytes, results))
    if primitive == "max_pool2d_grad" and shapes and shapes[0] is not None:
        # max_pool2d_with_indices again: its pooled output and int64 indices, alive until it returns
        return KernelMemory(workspace=_pooled(shapes[0], attrs) * (float_bytes + _INDEX))
    return KernelMemory(workspace=_unread(primitive, shapes, attrs, float_bytes, results))


__all__ = ["kernel_memory"]
