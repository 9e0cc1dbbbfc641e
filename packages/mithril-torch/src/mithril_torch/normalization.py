"""Kernels of the fused composites ``normalize``, ``normalize_grad`` and ``relu_grad``
(mithril.primitives.normalization).

Normalising over the trailing axes is ``native_layer_norm``, over every axis but
axis 1 ``native_batch_norm`` (training statistics, no running stats); both return
the mean and 1/std they computed, which ``normalize_grad`` hands to their backward
kernels. Other axes use ``var_mean`` and the closed-form gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

_aten = torch.ops.aten


def _layout(x: torch.Tensor, axes: Sequence[int]) -> tuple[str, list[int]]:
    nd = x.dim()
    ax = sorted(a % nd for a in axes)
    if ax == list(range(nd - len(ax), nd)):
        return "layer", list(x.shape[nd - len(ax) :])
    if nd >= 2 and ax == [0, *range(2, nd)]:
        return "batch", ax
    return "other", ax


def normalize(x: torch.Tensor, *, axes: Sequence[int], eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``((x - mean) * rstd, mean, rstd)`` over ``axes`` (biased variance), statistics with the axes kept."""
    kind, arg = _layout(x, axes)
    if kind == "layer":
        return _autograd_stats(x, axes, eps, *_aten.native_layer_norm.default(x, arg, None, None, eps))
    if kind == "batch":
        return _autograd_stats(x, axes, eps, *_batch_norm(x, None, None, eps))
    var, mean = torch.var_mean(x, dim=arg, correction=0, keepdim=True)
    rstd = torch.rsqrt(var + eps)
    return (x - mean) * rstd, mean, rstd


def _batch_norm(
    x: torch.Tensor, w: torch.Tensor | None, b: torch.Tensor | None, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out, mean, rstd = _aten.native_batch_norm.default(x, w, b, None, None, True, 0.0, eps)
    kept = [1, -1] + [1] * (x.dim() - 2)
    return out, mean.view(kept), rstd.view(kept)


def _autograd_stats(
    x: torch.Tensor, axes: Sequence[int], eps: float, out: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kernels' statistics, or, under torch.autograd (``autodiff="torch"``), where those have no
    gradient, the statistics recomputed differentiably."""
    if not (x.requires_grad and torch.is_grad_enabled()):
        return out, mean, rstd
    var, mean = torch.var_mean(x, dim=sorted(a % x.dim() for a in axes), correction=0, keepdim=True)
    return out, mean, torch.rsqrt(var + eps)


def normalize_grad(
    x: torch.Tensor, g: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, *, axes: Sequence[int]
) -> torch.Tensor:
    """Input gradient of :func:`normalize`'s output for the output gradient ``g``, from its statistics."""
    kind, arg = _layout(x, axes)
    if kind == "layer":
        return _aten.native_layer_norm_backward.default(g, x, arg, mean, rstd, None, None, [True, False, False])[0]
    if kind == "batch":
        return _aten.native_batch_norm_backward.default(
            g, x, None, None, None, mean.reshape(-1), rstd.reshape(-1), True, 0.0, [True, False, False]
        )[0]
    xhat = (x - mean) * rstd
    return rstd * (g - g.mean(dim=arg, keepdim=True) - xhat * (g * xhat).mean(dim=arg, keepdim=True))


def _affine_layout(x: torch.Tensor, w: torch.Tensor, axes: Sequence[int]) -> tuple[str, list[int]]:
    """``_layout``, where ``w`` is what torch's kernel takes (per channel: batch, per element: layer)."""
    kind, arg = _layout(x, axes)
    nd = x.dim()
    aligned = [1] * (nd - w.dim()) + list(w.shape)
    if kind == "batch" and aligned == [1, x.shape[1]] + [1] * (nd - 2):
        return kind, arg
    if kind == "layer" and aligned == [1] * (nd - len(arg)) + arg:
        return kind, arg
    return "other", sorted(a % nd for a in axes)


def normalize_affine(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, *, axes: Sequence[int], eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(normalize(x) * w + b, mean, rstd)``: one ``native_batch_norm``/``native_layer_norm`` where they apply."""
    kind, arg = _affine_layout(x, w, axes)
    if kind == "layer":
        return _autograd_stats(
            x, axes, eps, *_aten.native_layer_norm.default(x, arg, w.reshape(arg), b.reshape(arg), eps)
        )
    if kind == "batch":
        return _autograd_stats(x, axes, eps, *_batch_norm(x, w.reshape(-1), b.reshape(-1), eps))
    out, mean, rstd = normalize(x, axes=axes, eps=eps)
    return out * w + b, mean, rstd


def normalize_affine_grad(
    x: torch.Tensor, w: torch.Tensor, g: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, *, axes: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`normalize_affine`'s output wrt ``x``, ``w`` and ``b``, from the saved statistics."""
    kind, arg = _affine_layout(x, w, axes)
    if kind == "layer":
        wl = w.reshape(arg)
        gx, gw, gb = _aten.native_layer_norm_backward.default(g, x, arg, mean, rstd, wl, wl, [True, True, True])
    elif kind == "batch":
        gx, gw, gb = _aten.native_batch_norm_backward.default(
            g, x, w.reshape(-1), None, None, mean.reshape(-1), rstd.reshape(-1), True, 0.0, [True, True, True]
        )
    else:
        xhat = (x - mean) * rstd
        gx = normalize_grad(x, g * w, mean, rstd, axes=axes)
        gw, gb = _unbroadcast(g * xhat, w.shape), _unbroadcast(g, w.shape)
    return gx, gw.reshape(w.shape), gb.reshape(w.shape)


def _unbroadcast(g: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    lead = g.dim() - len(shape)
    axes = list(range(lead)) + [lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1]
    return g.sum(dim=axes) if axes else g


def relu_grad(y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``g`` where the relu output ``y`` is positive, else 0 (one pass, no bool temporary)."""
    return _aten.threshold_backward.default(g, y, 0)


KERNELS: dict[str, Callable[..., Any]] = {
    "normalize": normalize,
    "normalize_grad": normalize_grad,
    "normalize_affine": normalize_affine,
    "normalize_affine_grad": normalize_affine_grad,
    "relu_grad": relu_grad,
}
