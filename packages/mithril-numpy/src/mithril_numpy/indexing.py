"""NumPy kernels of the indexing primitives (``mithril.primitives.indexing``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import conv

Pair = tuple[int, int]


def gather_rows(weight: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``weight[indices]`` (embedding lookup)."""
    return np.take(weight, indices, axis=0)


def scatter_add_rows(grad: np.ndarray, indices: np.ndarray, *, num_rows: int) -> np.ndarray:
    """``zeros([num_rows, D])`` with the rows of ``grad`` added at ``indices`` (repeats accumulate)."""
    out = np.zeros((num_rows, grad.shape[-1]), dtype=grad.dtype)
    np.add.at(out, np.reshape(indices, -1), np.reshape(grad, (-1, grad.shape[-1])))
    return out


def gather_last(input: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``input[..., indices]``, one element of the last axis per position."""
    return np.take_along_axis(input, np.asarray(indices)[..., None], axis=-1)[..., 0]


def scatter_last(grad: np.ndarray, indices: np.ndarray, *, size: int) -> np.ndarray:
    """``zeros([..., size])`` with ``grad`` written at ``indices`` of the last axis."""
    out = np.zeros(np.shape(grad) + (size,), dtype=np.asarray(grad).dtype)
    np.put_along_axis(out, np.asarray(indices)[..., None], np.asarray(grad)[..., None], axis=-1)
    return out


def unflatten(input: np.ndarray, *, axis: int, sizes: Sequence[int]) -> np.ndarray:
    """Split ``axis`` into ``sizes`` (one may be -1), as ``torch.unflatten``."""
    ax = axis % input.ndim
    return np.reshape(input, input.shape[:ax] + tuple(sizes) + input.shape[ax + 1 :])


def reshape_as(input: np.ndarray, like: np.ndarray) -> np.ndarray:
    return np.reshape(input, np.shape(like))


def conv_transpose2d(
    input: np.ndarray,
    weight: np.ndarray,
    *,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
    output_padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
    groups: int = 1,
) -> np.ndarray:
    """As ``torch.nn.functional.conv_transpose2d`` (no bias): conv2d's input gradient."""
    n, _, h, w = input.shape
    hw = [
        (size - 1) * stride[i] - 2 * padding[i] + dilation[i] * (weight.shape[2 + i] - 1) + output_padding[i] + 1
        for i, size in enumerate((h, w))
    ]
    shape = (n, weight.shape[1] * groups, hw[0], hw[1])
    return conv.conv2d_input_grad(
        input, weight, input_shape=shape, stride=stride, padding=padding, dilation=dilation, groups=groups
    )


def positions(like: np.ndarray, *, axis: int = -1) -> np.ndarray:
    """``0..n-1`` (int64) for ``n = like.shape[axis]``."""
    return np.arange(np.shape(like)[axis], dtype=np.int64)


def tril_mask(like: np.ndarray, *, diagonal: int = 0) -> np.ndarray:
    """Bool ``[L, S]``: True on and below ``diagonal`` of ``like``'s last two axes."""
    return np.tril(np.ones(np.shape(like)[-2:], dtype=np.bool_), diagonal)


KERNELS: dict[str, Callable[..., Any]] = {
    "gather_rows": gather_rows,
    "scatter_add_rows": scatter_add_rows,
    "gather_last": gather_last,
    "scatter_last": scatter_last,
    "unflatten": unflatten,
    "reshape_as": reshape_as,
    "conv_transpose2d": conv_transpose2d,
    "tril_mask": tril_mask,
    "positions": positions,
}
