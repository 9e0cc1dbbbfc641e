"""Sliding windows over NCHW arrays: padding, window views, and their transpose.

The window view of a padded input ``xp`` is ``(N, C, KH, KW, Ho, Wo)`` with
``view[n, c, i, j, h, w] == xp[n, c, h * sh + i * dh, w * sw + j * dw]``: a strided
view, no copy. :func:`scatter_windows` is its transpose (overlapping windows add).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

Pair = Sequence[int]


def out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    """Output length of a window sweep (floor mode), as torch."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def pad(x: np.ndarray, padding: Pair, value: float = 0.0) -> np.ndarray:
    """``x`` with ``padding = (ph, pw)`` rows/columns of ``value`` on both sides (no copy when 0)."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    out = np.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def window_view(
    xp: np.ndarray, kernel: Pair, stride: Pair, dilation: Pair, out_hw: Pair, writeable: bool = False
) -> np.ndarray:
    """The ``(N, C, KH, KW, Ho, Wo)`` view of the windows of an (already padded) ``xp``."""
    n, c = xp.shape[:2]
    sn, sc, s_h, s_w = xp.strides
    return as_strided(
        xp,
        shape=(n, c, kernel[0], kernel[1], out_hw[0], out_hw[1]),
        strides=(sn, sc, dilation[0] * s_h, dilation[1] * s_w, stride[0] * s_h, stride[1] * s_w),
        writeable=writeable,
    )


def scatter_windows(windows: np.ndarray, padded_hw: Pair, stride: Pair, dilation: Pair) -> np.ndarray:
    """Transpose of :func:`window_view`: add ``windows`` (N, C, KH, KW, Ho, Wo) into a zero
    padded array ``(N, C, *padded_hw)``; rows no window reaches stay zero."""
    n, c, kh, kw, ho, wo = windows.shape
    out = np.zeros((n, c, padded_hw[0], padded_hw[1]), dtype=windows.dtype)
    (sh, sw), (dh, dw) = stride, dilation
    if sh >= dh * (kh - 1) + 1 and sw >= dw * (kw - 1) + 1:
        # disjoint windows: every padded element is written at most once
        window_view(out, (kh, kw), stride, dilation, (ho, wo), writeable=True)[...] = windows
        return out
    for i in range(kh):  # overlapping windows: one strided add per kernel offset
        for j in range(kw):
            out[:, :, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw] += windows[
                :, :, i, j
            ]
    return out


def crop(xp: np.ndarray, padding: Pair) -> np.ndarray:
    """Undo :func:`pad` (a view)."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return xp
    return xp[:, :, ph : xp.shape[2] - ph, pw : xp.shape[3] - pw]
