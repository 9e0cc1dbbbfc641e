"""max / average pooling over NCHW inputs and their gradients (floor mode, as torch)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .windows import crop, out_size, pad, scatter_windows, window_view

Pair = Sequence[int]


def _out_hw(hw: Pair, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> tuple[int, int]:
    return (
        out_size(hw[0], kernel[0], stride[0], padding[0], dilation[0]),
        out_size(hw[1], kernel[1], stride[1], padding[1], dilation[1]),
    )


def _max_windows(input: np.ndarray, kernel_size: Pair, stride: Pair, padding: Pair, dilation: Pair) -> np.ndarray:
    out_hw = _out_hw(input.shape[2:], kernel_size, stride, padding, dilation)
    return window_view(pad(input, padding, -np.inf), kernel_size, stride, dilation, out_hw)


def _window_max(windows: np.ndarray) -> np.ndarray:
    """Max over each window of a ``(N, C, KH, KW, Ho, Wo)`` view (NaN propagates)."""
    kh, kw = windows.shape[2:4]
    out = windows[:, :, 0, 0].copy()
    for k in range(1, kh * kw):  # one strided maximum per kernel offset
        np.maximum(out, windows[:, :, k // kw, k % kw], out=out)
    return out


def max_pool2d(
    input: np.ndarray, *, kernel_size: Pair, stride: Pair, padding: Pair = (0, 0), dilation: Pair = (1, 1)
) -> np.ndarray:
    """As ``torch.nn.functional.max_pool2d(..., ceil_mode=False)`` (padding is -inf)."""
    return _window_max(_max_windows(input, kernel_size, stride, padding, dilation))


def _hits_by_offset(windows: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """For each kernel offset k (row-major), the windows whose cotangent goes to offset k:
    the first maximum, or the last NaN where a window holds one (as torch)."""
    kh, kw = windows.shape[2:4]
    maxima = _window_max(windows)
    if np.isnan(maxima).any():
        nan_index = np.full(maxima.shape, -1, np.int64)
        for k in range(kh * kw):
            np.maximum(nan_index, np.where(np.isnan(windows[:, :, k // kw, k % kw]), k, -1), out=nan_index)
        taken = nan_index >= 0
    else:
        nan_index, taken = None, np.zeros(maxima.shape, np.bool_)
    for k in range(kh * kw):
        hit = windows[:, :, k // kw, k % kw] == maxima
        np.greater(hit, taken, out=hit)  # hit and not taken yet
        if k + 1 < kh * kw:
            taken |= hit
        if nan_index is not None:
            hit |= nan_index == k
        yield k, hit


def max_pool2d_grad(
    input: np.ndarray,
    grad: np.ndarray,
    *,
    kernel_size: Pair,
    stride: Pair,
    padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
) -> np.ndarray:
    """Gradient of :func:`max_pool2d` wrt ``input``: each window's cotangent goes to its first
    maximum in row-major window order; overlapping windows add."""
    kw = kernel_size[1]
    windows = _max_windows(input, kernel_size, stride, padding, dilation)
    padded_hw = (input.shape[2] + 2 * padding[0], input.shape[3] + 2 * padding[1])
    out = np.zeros((*input.shape[:2], *padded_hw), dtype=grad.dtype)
    targets = window_view(out, kernel_size, stride, dilation, grad.shape[2:], writeable=True)
    disjoint = all(s >= d * (k - 1) + 1 for s, d, k in zip(stride, dilation, kernel_size))
    for k, hit in _hits_by_offset(windows):
        target = targets[:, :, k // kw, k % kw]  # within one offset no element is hit twice
        if disjoint:
            np.multiply(grad, hit, out=target)  # and no other offset touches it
        else:
            target += grad * hit
    return crop(out, padding)


def _divisor(
    hw: Pair, out_hw: Pair, kernel_size: Pair, stride: Pair, padding: Pair, count_include_pad: bool, dtype: np.dtype
) -> float | np.ndarray:
    """What each window's sum is divided by: KH*KW, or the number of unpadded elements."""
    if count_include_pad:
        return float(kernel_size[0] * kernel_size[1])
    counts = []
    for n, o, k, s, p in zip(hw, out_hw, kernel_size, stride, padding):
        start = np.arange(o) * s - p
        counts.append(np.minimum(start + k, n) - np.maximum(start, 0))
    return np.multiply.outer(counts[0], counts[1]).astype(dtype)


def avg_pool2d(
    input: np.ndarray, *, kernel_size: Pair, stride: Pair, padding: Pair = (0, 0), count_include_pad: bool = True
) -> np.ndarray:
    """As ``torch.nn.functional.avg_pool2d(..., ceil_mode=False)``."""
    out_hw = _out_hw(input.shape[2:], kernel_size, stride, padding, (1, 1))
    windows = window_view(pad(input, padding), kernel_size, stride, (1, 1), out_hw)
    out = windows[:, :, 0, 0].copy()
    for i in range(kernel_size[0]):
        for j in range(kernel_size[1]):
            if i or j:
                out += windows[:, :, i, j]
    out /= _divisor(input.shape[2:], out_hw, kernel_size, stride, padding, count_include_pad, input.dtype)
    return out


def avg_pool2d_grad(
    grad: np.ndarray,
    *,
    input_shape: Sequence[int],
    kernel_size: Pair,
    stride: Pair,
    padding: Pair = (0, 0),
    count_include_pad: bool = True,
) -> np.ndarray:
    """Gradient of :func:`avg_pool2d` wrt its input."""
    n, c, h, w = input_shape
    ho, wo = grad.shape[2:]
    share = grad / _divisor((h, w), (ho, wo), kernel_size, stride, padding, count_include_pad, grad.dtype)
    windows = np.broadcast_to(share[:, :, None, None], (n, c, kernel_size[0], kernel_size[1], ho, wo))
    padded = scatter_windows(windows, (h + 2 * padding[0], w + 2 * padding[1]), stride, (1, 1))
    return crop(padded, padding)
