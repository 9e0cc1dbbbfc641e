"""Max pooling that saves its argmax for the gradient (the ``fuse_pool_indices`` pair).

``max_pool2d_with_indices`` returns the pooled values and, per output, where the
window's first max is; ``max_pool2d_grad_indices`` adds each gradient there. The
encoding of "where" is private to this pair:

* **eager**: torch's flat in-plane index (int64), straight from and back into
  ``aten.max_pool2d_with_indices(_backward)``;
* **under torch.compile** (inductor): the max's offset inside its window (int8,
  ``prims._low_memory_max_pool_with_offsets``), as inductor stores it for
  ``nn.MaxPool2d`` in an AOTAutograd graph. Compiled as one graph with the
  backward, inductor would otherwise inline the argmax into the gradient kernel
  and recompute it there; ``inductor_force_stride_order`` makes it store the
  offsets once (one int8 per output) instead. Measured on the seed CNN training
  step (1 CPU thread): the gradient kernel of the first BatchNorm layer took
  about 6 ms recomputing, against 3 ms reading stored offsets.

The gradient kernel tells the encodings apart by dtype. Windows larger than 25
elements, and torch builds without these inductor prims, keep the flat indices.
"""

from __future__ import annotations

import torch

Pair = tuple[int, int]

_aten = torch.ops.aten
#: inductor's own window size limit for the offset form (lowering.should_fallback_max_pool_with_indices)
MAX_OFFSET_WINDOW = 25


def _probe_offset_prims() -> bool:
    """Whether this torch has the prims of inductor's low-memory max pooling."""
    try:
        import torch._inductor.inductor_prims
    except Exception:
        return False
    prims = torch.ops.prims
    return all(
        hasattr(prims, name)
        for name in (
            "_low_memory_max_pool_with_offsets",
            "_low_memory_max_pool_offsets_to_indices",
            "inductor_force_stride_order",
        )
    )


#: the probe's answer, once made. A plain global, not functools.cache: dynamo traces through
#: cache wrappers and warns the user about each one it meets.
_HAS_OFFSET_PRIMS: bool | None = None


def probe_before_compiling() -> None:
    """Make the probe now, before dynamo traces a kernel: a global that changes while the first call
    is traced fails that call's guard (``_HAS_OFFSET_PRIMS is None``), and the second call compiled the
    whole step again. :meth:`TorchBackend.jit` calls it."""
    global _HAS_OFFSET_PRIMS
    if _HAS_OFFSET_PRIMS is None:
        _HAS_OFFSET_PRIMS = _probe_offset_prims()


def _use_offsets(kernel_size: Pair) -> bool:
    if not torch.compiler.is_compiling() or kernel_size[0] * kernel_size[1] > MAX_OFFSET_WINDOW:
        return False
    if _HAS_OFFSET_PRIMS is None:  # compiled without TorchBackend.jit
        probe_before_compiling()
    return bool(_HAS_OFFSET_PRIMS)


def max_pool2d_with_indices(
    x: torch.Tensor,
    *,
    kernel_size: Pair,
    stride: Pair,
    padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
) -> tuple[torch.Tensor, torch.Tensor]:
    """max_pool2d and where each window's first max is (see the module docstring for the encoding)."""
    if _use_offsets(kernel_size):
        prims = torch.ops.prims
        values, offsets = prims._low_memory_max_pool_with_offsets(
            x, list(kernel_size), list(stride), list(padding), list(dilation), False
        )
        return values, prims.inductor_force_stride_order(offsets, offsets.stride())
    return _aten.max_pool2d_with_indices.default(x, kernel_size, stride, padding, dilation, False)


def max_pool2d_grad_indices(
    x: torch.Tensor,
    indices: torch.Tensor,
    grad: torch.Tensor,
    *,
    kernel_size: Pair,
    stride: Pair,
    padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
) -> torch.Tensor:
    """Gradient of max_pool2d from the saved argmax (no second pooling pass)."""
    if indices.dtype == torch.int8:  # window offsets, stored under torch.compile
        indices = torch.ops.prims._low_memory_max_pool_offsets_to_indices(
            indices, list(kernel_size), list(x.shape[-2:]), list(stride), list(padding), list(dilation)
        )
    return _aten.max_pool2d_with_indices_backward.default(
        grad, x, kernel_size, stride, padding, dilation, False, indices
    )
