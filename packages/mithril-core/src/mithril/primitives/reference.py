"""An independent plain-NumPy float64 reference for every core primitive.

Each function takes the primitive's inputs in kernel order (NumPy arrays) and
its attributes as keywords, exactly like a backend kernel, and returns a NumPy
array. The formulas are written from the documented semantics of the
primitives (``mithril.primitives``), with torch.nn.functional's conventions for
convolution and pooling (NCHW input, OIHW weight, floor mode). They favour
being obviously right over being fast: the conformance suite calls them on
small arrays only, and the gradient tests differentiate them by central
finite differences.

Nothing here imports a Mithril backend (in particular not ``mithril_numpy``):
the reference must not share code with what it checks.

``REFERENCE`` maps primitive names to these functions; :func:`reference`
looks one up with a clear error for a primitive without a reference (a
plugin's primitive, for example).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

Array = np.ndarray
ReferenceFn = Callable[..., Array]

__all__ = [
    "REFERENCE",
    "avg_pool2d",
    "avg_pool2d_grad",
    "conv2d",
    "conv2d_input_grad",
    "conv2d_weight_grad",
    "conv_transpose2d",
    "max_pool2d",
    "max_pool2d_grad",
    "reference",
]


def _f(x: Any) -> Array:
    """float64 copy of an input (ints and bools are converted too)."""
    return np.array(x, dtype=np.float64)


# ------------------------------------------------------------- element-wise
def add(left: Array, right: Array) -> Array:
    return np.asarray(left) + np.asarray(right)


def sub(left: Array, right: Array) -> Array:
    return np.asarray(left) - np.asarray(right)


def mul(left: Array, right: Array) -> Array:
    return np.asarray(left) * np.asarray(right)


def div(left: Array, right: Array) -> Array:
    return _f(left) / _f(right)


def pow_(base: Array, exponent: Array) -> Array:
    return _f(base) ** _f(exponent)


def maximum(left: Array, right: Array) -> Array:
    left, right = np.broadcast_arrays(np.asarray(left), np.asarray(right))
    return np.where(left >= right, left, right)


def minimum(left: Array, right: Array) -> Array:
    left, right = np.broadcast_arrays(np.asarray(left), np.asarray(right))
    return np.where(left <= right, left, right)


def greater(left: Array, right: Array) -> Array:
    return np.asarray(np.asarray(left) > np.asarray(right), dtype=bool)


def greater_equal(left: Array, right: Array) -> Array:
    return np.asarray(np.asarray(left) >= np.asarray(right), dtype=bool)


def less(left: Array, right: Array) -> Array:
    return np.asarray(np.asarray(left) < np.asarray(right), dtype=bool)


def less_equal(left: Array, right: Array) -> Array:
    return np.asarray(np.asarray(left) <= np.asarray(right), dtype=bool)


def equal(left: Array, right: Array) -> Array:
    return np.asarray(np.asarray(left) == np.asarray(right), dtype=bool)


def not_equal(left: Array, right: Array) -> Array:
    return np.asarray(np.asarray(left) != np.asarray(right), dtype=bool)


def where(condition: Array, left: Array, right: Array) -> Array:
    c, a, b = np.broadcast_arrays(np.asarray(condition, dtype=bool), np.asarray(left), np.asarray(right))
    out = b.copy()
    out[c] = a[c]
    return out


def cast(input: Array, *, kind: str = "float") -> Array:
    """'float' -> float64; 'int' -> int64, truncating toward zero (as C and torch); 'bool' -> x != 0."""
    x = np.asarray(input)
    if kind == "float":
        return x.astype(np.float64)
    if kind == "int":
        if x.dtype.kind == "f":
            return np.trunc(x).astype(np.int64)
        return x.astype(np.int64)
    if kind == "bool":
        return x != 0
    raise ValueError(f"cast: unknown kind {kind!r}")


def neg(input: Array) -> Array:
    return -np.asarray(input)


def abs_(input: Array) -> Array:
    x = np.asarray(input)
    return np.where(x < 0, -x, x)


def sign(input: Array) -> Array:
    x = np.asarray(input)
    one = np.ones_like(x)
    return np.where(x > 0, one, np.where(x < 0, -one, np.zeros_like(x)))


def exp(input: Array) -> Array:
    return np.exp(_f(input))


def log(input: Array) -> Array:
    return np.log(_f(input))


def sqrt(input: Array) -> Array:
    return np.sqrt(_f(input))


def sin(input: Array) -> Array:
    return np.sin(_f(input))


def cos(input: Array) -> Array:
    return np.cos(_f(input))


def tanh(input: Array) -> Array:
    return np.tanh(_f(input))


def sigmoid(input: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-_f(input)))


def relu(input: Array) -> Array:
    x = _f(input)
    return np.where(x > 0, x, 0.0)


def leaky_relu(input: Array, *, slope: float = 0.01) -> Array:
    x = _f(input)
    return np.where(x > 0, x, slope * x)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def erf(input: Array) -> Array:
    return _erf(_f(input))


def gelu(input: Array, *, approximate: str = "none") -> Array:
    x = _f(input)
    if approximate == "tanh":
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    if approximate != "none":
        raise ValueError(f"gelu: unknown approximate={approximate!r}")
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


# --------------------------------------------------------------- reductions
def _axes(axis: Sequence[int] | None, rank: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(rank))
    return tuple(sorted(a % rank for a in axis))


def _reduce(fn: Callable[..., Array], x: Array, axis: Sequence[int] | None, keepdims: bool) -> Array:
    x = np.asarray(x)
    return np.asarray(fn(x, axis=_axes(axis, x.ndim), keepdims=keepdims))


def sum_(input: Array, *, axis: Sequence[int] | None = None, keepdims: bool = False) -> Array:
    return _reduce(np.sum, input, axis, keepdims)


def mean(input: Array, *, axis: Sequence[int] | None = None, keepdims: bool = False) -> Array:
    x = _f(input)
    axes = _axes(axis, x.ndim)
    n = math.prod(x.shape[a] for a in axes)
    return np.asarray(np.sum(x, axis=axes, keepdims=keepdims) / n)


def max_(input: Array, *, axis: Sequence[int] | None = None, keepdims: bool = False) -> Array:
    return _reduce(np.max, input, axis, keepdims)


def min_(input: Array, *, axis: Sequence[int] | None = None, keepdims: bool = False) -> Array:
    return _reduce(np.min, input, axis, keepdims)


def argmax(input: Array, *, axis: Sequence[int] | None = (-1,), keepdims: bool = False) -> Array:
    """Index of the first maximum along one axis (a 1-tuple), int64."""
    x = np.asarray(input)
    if axis is None or len(axis) != 1:
        raise ValueError(f"argmax: axis must be a 1-tuple, got {axis!r}")
    a = axis[0] % x.ndim
    moved = np.moveaxis(x, a, -1)
    idx = np.zeros(moved.shape[:-1], dtype=np.int64)
    best = moved[..., 0].copy()
    for i in range(1, moved.shape[-1]):
        better = moved[..., i] > best
        idx[better] = i
        best = np.where(better, moved[..., i], best)
    return np.expand_dims(idx, a) if keepdims else idx


def softmax(input: Array, *, axis: int = -1) -> Array:
    x = _f(input)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(input: Array, *, axis: int = -1) -> Array:
    x = _f(input)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def normalize(input: Array, *, axes: tuple[int, ...] = (-1,), eps: float = 1e-5, result: str = "output") -> Array:
    x = _f(input)
    mu = np.mean(x, axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(np.var(x, axis=axes, keepdims=True) + eps)
    return {"output": (x - mu) * rstd, "mean": mu, "rstd": rstd}[result]


def normalize_grad(input: Array, grad: Array, mean: Array, rstd: Array, *, axes: tuple[int, ...] = (-1,)) -> Array:
    # g @ J per normalised group, with the explicit Jacobian J = (I - 1/n - x̂ x̂ᵀ/n) rstd
    # (an independent form of the closed-form gradient the backends compute)
    x, g = _f(input), _f(grad)
    ax = sorted(a % x.ndim for a in axes)
    rest = [a for a in range(x.ndim) if a not in ax]
    perm = rest + ax
    xs, gs = np.transpose(x, perm), np.transpose(g, perm)
    ms, rs = np.transpose(_f(mean), perm), np.transpose(_f(rstd), perm)
    n = int(np.prod([x.shape[a] for a in ax]))
    xr, gr, mr, rr = xs.reshape(-1, n), gs.reshape(-1, n), ms.reshape(-1), rs.reshape(-1)
    out = np.empty_like(xr)
    for r in range(xr.shape[0]):
        xhat = (xr[r] - mr[r]) * rr[r]
        jac = (np.eye(n) - 1.0 / n - np.outer(xhat, xhat) / n) * rr[r]
        out[r] = gr[r] @ jac
    return np.transpose(out.reshape(xs.shape), np.argsort(perm))


def normalize_affine(
    input: Array,
    weight: Array,
    bias: Array,
    *,
    axes: tuple[int, ...] = (-1,),
    eps: float = 1e-5,
    result: str = "output",
) -> Array:
    out = normalize(input, axes=axes, eps=eps, result=result)
    return out * _f(weight) + _f(bias) if result == "output" else out


def normalize_affine_grad(
    input: Array,
    weight: Array,
    grad: Array,
    mean: Array,
    rstd: Array,
    *,
    axes: tuple[int, ...] = (-1,),
    result: str = "input",
) -> Array:
    x, w, g = _f(input), _f(weight), _f(grad)
    if result == "input":
        return normalize_grad(x, g * w, mean, rstd, axes=axes)
    full = g * (x - _f(mean)) * _f(rstd) if result == "weight" else g
    lead = full.ndim - w.ndim
    summed = full.sum(axis=tuple(range(lead))) if lead else full
    return summed.sum(axis=tuple(i for i, d in enumerate(w.shape) if d == 1), keepdims=True).reshape(w.shape)


def relu_grad(activation: Array, grad: Array) -> Array:
    return np.where(_f(activation) > 0, _f(grad), 0.0)


def gelu_grad(input: Array, grad: Array, *, approximate: str = "none") -> Array:
    x, g = _f(input), _f(grad)
    if approximate == "tanh":
        c = math.sqrt(2.0 / math.pi)
        t = np.tanh(c * (x + 0.044715 * x**3))
        return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * x * x))
    if approximate != "none":
        raise ValueError(f"gelu_grad: unknown approximate={approximate!r}")
    return g * (0.5 * (1.0 + _erf(x / math.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi))


def softmax_grad(activation: Array, grad: Array, *, axis: int = -1) -> Array:
    y, g = _f(activation), _f(grad)
    return y * (g - np.sum(g * y, axis=axis, keepdims=True))


# ---------------------------------------------------------------- structure
def matmul(left: Array, right: Array) -> Array:
    """Batched matrix product of rank >= 2 operands, batch dims broadcast, as sums of products."""
    a, b = np.asarray(left), np.asarray(right)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, batch + a.shape[-2:])
    b = np.broadcast_to(b, batch + b.shape[-2:])
    return np.einsum("...mk,...kn->...mn", a, b)


def transpose(input: Array, *, axes: Sequence[int] | None = None) -> Array:
    x = np.asarray(input)
    if axes is None:
        axes = tuple(reversed(range(x.ndim)))
    return np.transpose(x, tuple(a % x.ndim for a in axes)).copy()


def reshape(input: Array, *, shape: Sequence[int]) -> Array:
    return np.reshape(np.asarray(input), tuple(shape)).copy()


def flatten(input: Array, *, start_axis: int = 1, end_axis: int = -1) -> Array:
    """torch.flatten: merge axes start_axis..end_axis."""
    x = np.asarray(input)
    s, e = start_axis % x.ndim, end_axis % x.ndim
    return x.reshape(x.shape[:s] + (math.prod(x.shape[s : e + 1]),) + x.shape[e + 1 :]).copy()


def broadcast_to(input: Array, *, shape: Sequence[int]) -> Array:
    return np.broadcast_to(np.asarray(input), tuple(shape)).copy()


def concat(*inputs: Array, axis: int = 0) -> Array:
    return np.concatenate([np.asarray(x) for x in inputs], axis=axis)


def _index(starts: Sequence[int | None], stops: Sequence[int | None], steps: Sequence[int | None]) -> tuple[slice, ...]:
    return tuple(slice(a, b, c) for a, b, c in zip(starts, stops, steps))


def slice_(
    input: Array, *, starts: Sequence[int | None], stops: Sequence[int | None], steps: Sequence[int | None]
) -> Array:
    """Python slicing ``input[starts[0]:stops[0]:steps[0], ...]`` of the leading axes."""
    return np.asarray(input)[_index(starts, stops, steps)].copy()


def slice_grad(
    grad: Array,
    *,
    input_shape: Sequence[int],
    starts: Sequence[int | None],
    stops: Sequence[int | None],
    steps: Sequence[int | None],
) -> Array:
    """zeros(input_shape) with ``grad`` written where :func:`slice_` reads."""
    g = np.asarray(grad)
    out = np.zeros(tuple(input_shape), dtype=g.dtype)
    out[_index(starts, stops, steps)] = g
    return out


# ------------------------------------------------------------ convolution
def _out_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _window(
    xp: Array, i: int, j: int, ho: int, wo: int, stride: Sequence[int], dilation: Sequence[int]
) -> tuple[Any, ...]:
    """Index (of the padded spatial axes) of kernel tap (i, j) for every output position."""
    sh, sw = stride
    dh, dw = dilation
    return (slice(i * dh, i * dh + sh * (ho - 1) + 1, sh), slice(j * dw, j * dw + sw * (wo - 1) + 1, sw))


def conv2d(
    input: Array,
    weight: Array,
    *,
    stride: Sequence[int] = (1, 1),
    padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
    groups: int = 1,
) -> Array:
    """Cross-correlation over NCHW with OIHW weight and zero padding (torch.nn.functional.conv2d)."""
    x, w = _f(input), _f(weight)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    assert cg * groups == c and o % groups == 0
    og = o // groups
    ho = _out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _out_size(wd, kw, stride[1], padding[1], dilation[1])
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    out = np.zeros((n, o, ho, wo))
    for g in range(groups):
        xg = xp[:, g * cg : (g + 1) * cg]
        wg = w[g * og : (g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                si, sj = _window(xp, i, j, ho, wo, stride, dilation)
                # out[n, o, y, x] += sum_c xg[n, c, y*s + i*d, x*s + j*d] * w[o, c, i, j]
                out[:, g * og : (g + 1) * og] += np.einsum("nchw,oc->nohw", xg[:, :, si, sj], wg[:, :, i, j])
    return out


def conv2d_input_grad(
    grad: Array,
    weight: Array,
    *,
    input_shape: Sequence[int],
    stride: Sequence[int] = (1, 1),
    padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
    groups: int = 1,
) -> Array:
    """d(sum(grad * conv2d(x, weight)))/dx for x of ``input_shape``: each output scatters back."""
    gy, w = _f(grad), _f(weight)
    n, c, h, wd = input_shape
    o, cg, kh, kw = w.shape
    og = o // groups
    ho, wo = gy.shape[2:]
    gxp = np.zeros((n, c, h + 2 * padding[0], wd + 2 * padding[1]))
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                si, sj = _window(gxp, i, j, ho, wo, stride, dilation)
                gxp[:, g * cg : (g + 1) * cg, si, sj] += np.einsum(
                    "nohw,oc->nchw", gy[:, g * og : (g + 1) * og], w[g * og : (g + 1) * og, :, i, j]
                )
    return gxp[:, :, padding[0] : padding[0] + h, padding[1] : padding[1] + wd].copy()


def conv2d_weight_grad(
    input: Array,
    grad: Array,
    *,
    weight_shape: Sequence[int],
    stride: Sequence[int] = (1, 1),
    padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
    groups: int = 1,
) -> Array:
    """d(sum(grad * conv2d(input, w)))/dw for w of ``weight_shape``."""
    x, gy = _f(input), _f(grad)
    o, cg, kh, kw = weight_shape
    og = o // groups
    ho, wo = gy.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    gw = np.zeros(tuple(weight_shape))
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                si, sj = _window(xp, i, j, ho, wo, stride, dilation)
                gw[g * og : (g + 1) * og, :, i, j] = np.einsum(
                    "nohw,nchw->oc", gy[:, g * og : (g + 1) * og], xp[:, g * cg : (g + 1) * cg, si, sj]
                )
    return gw


# ----------------------------------------------------------------- pooling
def _pool_positions(
    h: int, w: int, kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int]
) -> Iterator[tuple[int, int, list[int], list[int], int, int]]:
    """Yield (oy, ox, rows, cols): the unpadded input coordinates each output window covers."""
    kh, kw = kernel_size
    ho = _out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _out_size(w, kw, stride[1], padding[1], dilation[1])
    for oy in range(ho):
        for ox in range(wo):
            rows = [oy * stride[0] - padding[0] + i * dilation[0] for i in range(kh)]
            cols = [ox * stride[1] - padding[1] + j * dilation[1] for j in range(kw)]
            yield oy, ox, rows, cols, ho, wo


def _pool_shape(
    x: Array, kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int]
) -> tuple[int, int]:
    h, w = x.shape[2:]
    return (
        _out_size(h, kernel_size[0], stride[0], padding[0], dilation[0]),
        _out_size(w, kernel_size[1], stride[1], padding[1], dilation[1]),
    )


def max_pool2d(
    input: Array,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
) -> Array:
    """Max over each window; padding never wins (-inf)."""
    x = np.asarray(input)
    n, c, h, w = x.shape
    ho, wo = _pool_shape(x, kernel_size, stride, padding, dilation)
    out = np.empty((n, c, ho, wo), dtype=x.dtype)
    for oy, ox, rows, cols, _, _ in _pool_positions(h, w, kernel_size, stride, padding, dilation):
        taps = [x[:, :, r, q] for r in rows if 0 <= r < h for q in cols if 0 <= q < w]
        out[:, :, oy, ox] = np.max(np.stack(taps, axis=-1), axis=-1)
    return out


def max_pool2d_with_indices(
    input: Array,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
    result: str = "output",
) -> Array:
    """max_pool2d, or the flat in-plane index (row * width + column) of each window's first max."""
    x = np.asarray(input)
    if result == "output":
        return max_pool2d(x, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation)
    n, c, h, w = x.shape
    ho, wo = _pool_shape(x, kernel_size, stride, padding, dilation)
    out = np.empty((n, c, ho, wo), dtype=np.int64)
    for oy, ox, rows, cols, _, _ in _pool_positions(h, w, kernel_size, stride, padding, dilation):
        taps = [(r, q) for r in rows if 0 <= r < h for q in cols if 0 <= q < w]
        first = np.argmax(np.stack([x[:, :, r, q] for r, q in taps], axis=-1), axis=-1)
        out[:, :, oy, ox] = np.asarray([r * w + q for r, q in taps])[first]
    return out


def max_pool2d_grad_indices(input: Array, indices: Array, grad: Array, **_: Any) -> Array:
    """Each grad added at its saved flat in-plane index."""
    x, gy = np.asarray(input), _f(grad)
    n, c, h, w = x.shape
    gx = np.zeros((n, c, h * w))
    idx = np.asarray(indices).reshape(n, c, -1)
    for i in range(n):
        for j in range(c):
            np.add.at(gx[i, j], idx[i, j], gy[i, j].reshape(-1))
    return gx.reshape(x.shape)


def max_pool2d_grad(
    input: Array,
    grad: Array,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
) -> Array:
    """Each window's grad goes to the first (row-major) position of its max; overlaps add up."""
    x, gy = np.asarray(input), _f(grad)
    _n, _c, h, w = x.shape
    gx = np.zeros(x.shape)
    for oy, ox, rows, cols, _, _ in _pool_positions(h, w, kernel_size, stride, padding, dilation):
        taps = [(r, q) for r in rows if 0 <= r < h for q in cols if 0 <= q < w]
        vals = np.stack([x[:, :, r, q] for r, q in taps], axis=-1)
        first = np.argmax(vals, axis=-1)  # NumPy's argmax returns the first maximum
        for t, (r, q) in enumerate(taps):
            gx[:, :, r, q] += np.where(first == t, gy[:, :, oy, ox], 0.0)
    return gx


def avg_pool2d(
    input: Array,
    *,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int] = (0, 0),
    count_include_pad: bool = True,
) -> Array:
    """Mean over each window; zero padding, counted in the divisor when ``count_include_pad``."""
    x = _f(input)
    n, c, h, w = x.shape
    ho, wo = _pool_shape(x, kernel_size, stride, padding, (1, 1))
    out = np.zeros((n, c, ho, wo))
    for oy, ox, rows, cols, _, _ in _pool_positions(h, w, kernel_size, stride, padding, (1, 1)):
        taps = [x[:, :, r, q] for r in rows if 0 <= r < h for q in cols if 0 <= q < w]
        count = kernel_size[0] * kernel_size[1] if count_include_pad else len(taps)
        out[:, :, oy, ox] = np.sum(np.stack(taps, axis=-1), axis=-1) / count
    return out


def avg_pool2d_grad(
    grad: Array,
    *,
    input_shape: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int] = (0, 0),
    count_include_pad: bool = True,
) -> Array:
    """Each window's grad is shared evenly (by the forward divisor) among its input positions."""
    gy = _f(grad)
    _n, _c, h, w = input_shape
    gx = np.zeros(tuple(input_shape))
    for oy, ox, rows, cols, _, _ in _pool_positions(h, w, kernel_size, stride, padding, (1, 1)):
        taps = [(r, q) for r in rows if 0 <= r < h for q in cols if 0 <= q < w]
        count = kernel_size[0] * kernel_size[1] if count_include_pad else len(taps)
        for r, q in taps:
            gx[:, :, r, q] += gy[:, :, oy, ox] / count
    return gx


# ---------------------------------------------------------------- indexing
def gather_rows(weight: Array, indices: Array) -> Array:
    """``weight[indices]``: row ``indices[...]`` of ``weight [V, D]`` for every index (embedding lookup)."""
    w, idx = np.asarray(weight), np.asarray(indices, dtype=np.int64)
    out = np.empty(idx.shape + w.shape[1:], dtype=w.dtype)
    for pos in np.ndindex(*idx.shape):
        out[pos] = w[idx[pos]]
    return out


def scatter_add_rows(grad: Array, indices: Array, *, num_rows: int) -> Array:
    """zeros([num_rows, D]) with each row of ``grad`` added at its index (repeated indices add up)."""
    g, idx = _f(grad), np.asarray(indices, dtype=np.int64)
    out = np.zeros((num_rows, g.shape[-1]))
    for pos in np.ndindex(*idx.shape):
        out[idx[pos]] += g[pos]
    return out


def gather_last(input: Array, indices: Array) -> Array:
    """``out[...] = input[..., indices[...]]``."""
    x, idx = np.asarray(input), np.asarray(indices, dtype=np.int64)
    out = np.empty(idx.shape, dtype=x.dtype)
    for pos in np.ndindex(*idx.shape):
        out[pos] = x[pos + (idx[pos],)]
    return out


def scatter_last(grad: Array, indices: Array, *, size: int) -> Array:
    """zeros([..., size]) with ``grad[...]`` written at ``[..., indices[...]]``."""
    g, idx = _f(grad), np.asarray(indices, dtype=np.int64)
    out = np.zeros(g.shape + (size,))
    for pos in np.ndindex(*idx.shape):
        out[pos + (idx[pos],)] = g[pos]
    return out


def unflatten(input: Array, *, axis: int, sizes: Sequence[int]) -> Array:
    """torch.unflatten: split ``axis`` into ``sizes`` (one may be -1)."""
    x = np.asarray(input)
    a = axis % x.ndim
    sizes = list(sizes)
    if -1 in sizes:
        known = math.prod(s for s in sizes if s != -1)
        sizes[sizes.index(-1)] = x.shape[a] // known
    return x.reshape(x.shape[:a] + tuple(sizes) + x.shape[a + 1 :]).copy()


def reshape_as(input: Array, like: Array) -> Array:
    return np.reshape(np.asarray(input), np.shape(like)).copy()


def positions(like: Array, *, axis: int = -1) -> Array:
    return np.arange(np.shape(like)[axis], dtype=np.int64)


def tril_mask(like: Array, *, diagonal: int = 0) -> Array:
    """bool [L, S] for the last two axes of ``like``: True where column <= row + diagonal."""
    rows, cols = np.shape(like)[-2:]
    return np.array([[c <= r + diagonal for c in range(cols)] for r in range(rows)], dtype=bool).reshape(rows, cols)


def conv_transpose2d(
    input: Array,
    weight: Array,
    *,
    stride: Sequence[int] = (1, 1),
    padding: Sequence[int] = (0, 0),
    output_padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
    groups: int = 1,
) -> Array:
    """torch.nn.functional.conv_transpose2d (no bias), weight ``[in, out/groups, kh, kw]``.

    Every input pixel ``(y, x)`` adds ``input * weight[:, :, i, j]`` at output
    ``(y*stride + i*dilation - padding, x*stride + j*dilation - padding)``.
    """
    x, w = _f(input), _f(weight)
    n, c, h, wd = x.shape
    ci, og, kh, kw = w.shape
    assert ci == c and c % groups == 0
    cg = c // groups
    full = [
        (h - 1) * stride[0] + dilation[0] * (kh - 1) + 1 + output_padding[0],
        (wd - 1) * stride[1] + dilation[1] * (kw - 1) + 1 + output_padding[1],
    ]
    out = np.zeros((n, og * groups, full[0], full[1]))
    for g in range(groups):
        xg = x[:, g * cg : (g + 1) * cg]
        for i in range(kh):
            for j in range(kw):
                rows = slice(i * dilation[0], i * dilation[0] + stride[0] * (h - 1) + 1, stride[0])
                cols = slice(j * dilation[1], j * dilation[1] + stride[1] * (wd - 1) + 1, stride[1])
                out[:, g * og : (g + 1) * og, rows, cols] += np.einsum(
                    "nchw,co->nohw", xg, w[g * cg : (g + 1) * cg, :, i, j]
                )
    ho, wo = full[0] - 2 * padding[0], full[1] - 2 * padding[1]
    return out[:, :, padding[0] : padding[0] + ho, padding[1] : padding[1] + wo].copy()


def linear(input: Array, weight: Array, bias: Array) -> Array:
    """torch.nn.functional.linear: input @ weight.T + bias (the optional fused primitive)."""
    return matmul(_f(input)[..., None, :], np.swapaxes(_f(weight), -1, -2))[..., 0, :] + _f(bias)


# ------------------------------------------------------------------- table
REFERENCE: dict[str, ReferenceFn] = {
    "add": add,
    "sub": sub,
    "mul": mul,
    "div": div,
    "pow": pow_,
    "maximum": maximum,
    "minimum": minimum,
    "greater": greater,
    "greater_equal": greater_equal,
    "less": less,
    "less_equal": less_equal,
    "equal": equal,
    "not_equal": not_equal,
    "where": where,
    "cast": cast,
    "neg": neg,
    "abs": abs_,
    "sign": sign,
    "exp": exp,
    "log": log,
    "sqrt": sqrt,
    "sin": sin,
    "cos": cos,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "erf": erf,
    "gelu": gelu,
    "sum": sum_,
    "mean": mean,
    "max": max_,
    "min": min_,
    "argmax": argmax,
    "softmax": softmax,
    "log_softmax": log_softmax,
    "normalize": normalize,
    "normalize_grad": normalize_grad,
    "normalize_affine": normalize_affine,
    "normalize_affine_grad": normalize_affine_grad,
    "relu_grad": relu_grad,
    "gelu_grad": gelu_grad,
    "softmax_grad": softmax_grad,
    "matmul": matmul,
    "transpose": transpose,
    "reshape": reshape,
    "flatten": flatten,
    "broadcast_to": broadcast_to,
    "concat": concat,
    "slice": slice_,
    "slice_grad": slice_grad,
    "conv2d": conv2d,
    "conv2d_input_grad": conv2d_input_grad,
    "conv2d_weight_grad": conv2d_weight_grad,
    "max_pool2d": max_pool2d,
    "max_pool2d_grad": max_pool2d_grad,
    "max_pool2d_with_indices": max_pool2d_with_indices,
    "max_pool2d_grad_indices": max_pool2d_grad_indices,
    "avg_pool2d": avg_pool2d,
    "avg_pool2d_grad": avg_pool2d_grad,
    "gather_rows": gather_rows,
    "scatter_add_rows": scatter_add_rows,
    "gather_last": gather_last,
    "scatter_last": scatter_last,
    "unflatten": unflatten,
    "reshape_as": reshape_as,
    "tril_mask": tril_mask,
    "positions": positions,
    "conv_transpose2d": conv_transpose2d,
    # optional (fused) primitives
    "linear": linear,
}


def reference(name: str) -> ReferenceFn:
    """The reference implementation of primitive ``name``."""
    try:
        return REFERENCE[name]
    except KeyError:
        raise KeyError(f"mithril.primitives.reference has no reference for primitive {name!r}") from None
