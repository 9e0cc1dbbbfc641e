"""Independent float64 NumPy reference implementations (no torch) for the kernel tests."""

from __future__ import annotations

import math

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])


def erf(x: np.ndarray) -> np.ndarray:
    return _erf(x)


def gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def _pad(x: np.ndarray, padding: tuple[int, int], value: float) -> np.ndarray:
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _out(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def conv2d(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1) -> np.ndarray:
    """Cross-correlation, NCHW / OIHW, by explicit loops over the output."""
    n, _c, h, wd = x.shape
    o, ci, kh, kw = w.shape
    ho, wo = _out(h, kh, stride[0], padding[0], dilation[0]), _out(wd, kw, stride[1], padding[1], dilation[1])
    xp = _pad(x, padding, 0.0)
    out = np.zeros((n, o, ho, wo))
    og = o // groups
    for oc in range(o):
        g = oc // og
        xs = xp[:, g * ci : (g + 1) * ci]
        for i in range(ho):
            for j in range(wo):
                r0, c0 = i * stride[0], j * stride[1]
                patch = xs[
                    :,
                    :,
                    r0 : r0 + dilation[0] * (kh - 1) + 1 : dilation[0],
                    c0 : c0 + dilation[1] * (kw - 1) + 1 : dilation[1],
                ]
                out[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3))
    return out


def _windows(h: int, w: int, kernel, stride, padding, dilation):
    """Yield (i, j, rows, cols) of each window, in padded coordinates."""
    ho, wo = (
        _out(h, kernel[0], stride[0], padding[0], dilation[0]),
        _out(w, kernel[1], stride[1], padding[1], dilation[1]),
    )
    for i in range(ho):
        for j in range(wo):
            rows = [i * stride[0] + a * dilation[0] for a in range(kernel[0])]
            cols = [j * stride[1] + b * dilation[1] for b in range(kernel[1])]
            yield i, j, rows, cols
    return


def max_pool2d(x, kernel_size, stride, padding=(0, 0), dilation=(1, 1)) -> np.ndarray:
    n, c, h, w = x.shape
    xp = _pad(x, padding, -np.inf)
    ho, wo = (
        _out(h, kernel_size[0], stride[0], padding[0], dilation[0]),
        _out(w, kernel_size[1], stride[1], padding[1], dilation[1]),
    )
    out = np.empty((n, c, ho, wo))
    for i, j, rows, cols in _windows(h, w, kernel_size, stride, padding, dilation):
        out[:, :, i, j] = xp[:, :, rows][:, :, :, cols].max(axis=(2, 3))
    return out


def max_pool2d_grad(x, g, kernel_size, stride, padding=(0, 0), dilation=(1, 1)) -> np.ndarray:
    """Each window's cotangent goes to the first max of the window (row-major)."""
    n, c, h, w = x.shape
    xp = _pad(x, padding, -np.inf)
    gp = np.zeros_like(xp)
    for i, j, rows, cols in _windows(h, w, kernel_size, stride, padding, dilation):
        for b in range(n):
            for ch in range(c):
                win = xp[b, ch][np.ix_(rows, cols)]
                a, e = np.unravel_index(np.argmax(win), win.shape)
                gp[b, ch, rows[a], cols[e]] += g[b, ch, i, j]
    ph, pw = padding
    return gp[:, :, ph : ph + h, pw : pw + w]


def _avg_counts(h, w, kernel_size, stride, padding, count_include_pad):
    for i, j, rows, cols in _windows(h, w, kernel_size, stride, padding, (1, 1)):
        if count_include_pad:
            # torch counts padded cells but not cells past the padding
            hs = min(rows[-1] + 1, h + 2 * padding[0]) - rows[0]
            ws = min(cols[-1] + 1, w + 2 * padding[1]) - cols[0]
            count = hs * ws
        else:
            count = sum(padding[0] <= r < padding[0] + h for r in rows) * sum(
                padding[1] <= q < padding[1] + w for q in cols
            )
        yield i, j, rows, cols, count


def avg_pool2d(x, kernel_size, stride, padding=(0, 0), count_include_pad=True) -> np.ndarray:
    n, c, h, w = x.shape
    xp = _pad(x, padding, 0.0)
    ho, wo = _out(h, kernel_size[0], stride[0], padding[0], 1), _out(w, kernel_size[1], stride[1], padding[1], 1)
    out = np.empty((n, c, ho, wo))
    for i, j, rows, cols, count in _avg_counts(h, w, kernel_size, stride, padding, count_include_pad):
        out[:, :, i, j] = xp[:, :, rows][:, :, :, cols].sum(axis=(2, 3)) / count
    return out


def avg_pool2d_grad(g, input_shape, kernel_size, stride, padding=(0, 0), count_include_pad=True) -> np.ndarray:
    n, c, h, w = input_shape
    gp = np.zeros((n, c, h + 2 * padding[0], w + 2 * padding[1]))
    for i, j, rows, cols, count in _avg_counts(h, w, kernel_size, stride, padding, count_include_pad):
        gp[:, :, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] += g[:, :, i : i + 1, j : j + 1] / count
    ph, pw = padding
    return gp[:, :, ph : ph + h, pw : pw + w]
