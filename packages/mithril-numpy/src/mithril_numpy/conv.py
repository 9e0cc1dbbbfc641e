"""conv2d and its two gradients by im2col and matrix products.

Shapes: input ``(N, C, H, W)``, weight ``(O, C // groups, KH, KW)``, output
``(N, O, Ho, Wo)``. Groups are a batch axis of the matrix products, never a loop.

Two layouts of the im2col matrix: per sample, ``(N, G, Cg*KH*KW, Ho*Wo)``, whose
product is already NCHW; or one matrix ``(G, Cg*KH*KW, N*Ho*Wo)``, one large
product that BLAS threads better when images are small, at the price of a
transpose of the result. :data:`PER_SAMPLE_MIN_PIXELS` picks between them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .windows import crop, out_size, pad, scatter_windows, window_view

Pair = Sequence[int]

#: use per-sample products when an output image has at least this many pixels
PER_SAMPLE_MIN_PIXELS = 512


def _out_hw(hw: Pair, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> tuple[int, int]:
    return (
        out_size(hw[0], kernel[0], stride[0], padding[0], dilation[0]),
        out_size(hw[1], kernel[1], stride[1], padding[1], dilation[1]),
    )


def _grad_by_group(grad: np.ndarray, groups: int) -> np.ndarray:
    """``(N, O, Ho, Wo)`` -> ``(G, O/G, N*Ho*Wo)`` (a copy)."""
    n, o, ho, wo = grad.shape
    return grad.reshape(n, groups, o // groups, ho * wo).transpose(1, 2, 0, 3).reshape(groups, o // groups, -1)


def conv2d(
    input: np.ndarray,
    weight: np.ndarray,
    *,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
    groups: int = 1,
) -> np.ndarray:
    """Cross-correlation as ``torch.nn.functional.conv2d(input, weight, None, ...)``."""
    n = input.shape[0]
    o, cg, kh, kw = weight.shape
    ho, wo = _out_hw(input.shape[2:], (kh, kw), stride, padding, dilation)
    windows = window_view(pad(input, padding), (kh, kw), stride, dilation, (ho, wo))  # (N, C, KH, KW, Ho, Wo)
    w = weight.reshape(groups, o // groups, cg * kh * kw)
    if ho * wo >= PER_SAMPLE_MIN_PIXELS:
        cols = windows.reshape(n, groups, cg * kh * kw, ho * wo)  # the im2col copy
        return np.matmul(w, cols).reshape(n, o, ho, wo)
    cols = windows.transpose(1, 2, 3, 0, 4, 5).reshape(groups, cg * kh * kw, n * ho * wo)
    out = np.matmul(w, cols).reshape(o, n, ho, wo)
    return np.ascontiguousarray(out.transpose(1, 0, 2, 3))


def conv2d_input_grad(
    grad: np.ndarray,
    weight: np.ndarray,
    *,
    input_shape: Sequence[int],
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
    groups: int = 1,
) -> np.ndarray:
    """As ``torch.nn.grad.conv2d_input(input_shape, weight, grad, ...)``."""
    n, c, h, w = input_shape
    o, cg, kh, kw = weight.shape
    ho, wo = grad.shape[2:]
    w_t = weight.reshape(groups, o // groups, cg * kh * kw).transpose(0, 2, 1)
    if ho * wo >= PER_SAMPLE_MIN_PIXELS:
        cols = np.matmul(w_t, grad.reshape(n, groups, o // groups, ho * wo))  # (N, G, Cg*KH*KW, Ho*Wo)
        windows = cols.reshape(n, c, kh, kw, ho, wo)
    else:
        cols = np.matmul(w_t, _grad_by_group(grad, groups))  # (G, Cg*KH*KW, N*Ho*Wo)
        windows = cols.reshape(c, kh, kw, n, ho, wo).transpose(3, 0, 1, 2, 4, 5)
    padded = scatter_windows(windows, (h + 2 * padding[0], w + 2 * padding[1]), stride, dilation)
    return crop(padded, padding)


def conv2d_weight_grad(
    input: np.ndarray,
    grad: np.ndarray,
    *,
    weight_shape: Sequence[int],
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
    groups: int = 1,
) -> np.ndarray:
    """As ``torch.nn.grad.conv2d_weight(input, weight_shape, grad, ...)``."""
    n = input.shape[0]
    o, cg, kh, kw = weight_shape
    ho, wo = grad.shape[2:]
    windows = window_view(pad(input, padding), (kh, kw), stride, dilation, (ho, wo))
    # (C, KH, KW, N, Ho, Wo): one im2col copy laid out for a single product over N*Ho*Wo
    cols = windows.transpose(1, 2, 3, 0, 4, 5).reshape(groups, cg * kh * kw, n * ho * wo)
    return np.matmul(_grad_by_group(grad, groups), cols.transpose(0, 2, 1)).reshape(o, cg, kh, kw)
