"""Kernels of the fused composites ``normalize``, ``normalize_grad`` and ``relu_grad``
(mithril.primitives.normalization).

Normalising over the trailing axes is ``native_layer_norm``, over every axis but
axis 1 ``native_batch_norm`` (training statistics, no running stats); both return
the mean and 1/std they computed, which ``normalize_grad`` hands to their backward
kernels. Other axes use ``var_mean`` and the closed-form gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_aten = torch.ops.aten


def _layout(x: torch.Tensor, axes: Sequence[int]) -> tuple[str, list[int]]:
    nd = x.dim()
    ax = sorted(a % nd for a in axes)
    if ax == list(range(nd - len(ax), nd)):
        return "layer", list(x.shape[nd - len(ax):])
    if nd >= 2 and ax == [0, *range(2, nd)]:
        return "batch", ax
    return "other", ax


def normalize(x: torch.Tensor, *, axes: Sequence[int], eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``((x - mean) * rstd, mean, rstd)`` over ``axes`` (biased variance), statistics with the axes kept."""
    kind, arg = _layout(x, axes)
    if kind != "other":
        if kind == "layer":
            out, mean, rstd = _aten.native_layer_norm.default(x, arg, None, None, eps)
        else:
            out, mean, rstd = _aten.native_batch_norm.default(x, None, None, None, None, True, 0.0, eps)
            kept = [1, -1] + [1] * (x.dim() - 2)
            mean, rstd = mean.view(kept), rstd.view(kept)
        if not (x.requires_grad and torch.is_grad_enabled()):
            return out, mean, rstd
        # under torch.autograd (autodiff="torch") the kernels' statistics have no gradient: recompute them
        arg = sorted(a % x.dim() for a in axes)
        var, mean = torch.var_mean(x, dim=arg, correction=0, keepdim=True)
        return out, mean, torch.rsqrt(var + eps)
    var, mean = torch.var_mean(x, dim=arg, correction=0, keepdim=True)
    rstd = torch.rsqrt(var + eps)
    return (x - mean) * rstd, mean, rstd


def normalize_grad(x: torch.Tensor, g: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, *,
                   axes: Sequence[int]) -> torch.Tensor:
    """Input gradient of :func:`normalize`'s output for the output gradient ``g``, from its statistics."""
    kind, arg = _layout(x, axes)
    if kind == "layer":
        return _aten.native_layer_norm_backward.default(g, x, arg, mean, rstd, None, None, [True, False, False])[0]
    if kind == "batch":
        return _aten.native_batch_norm_backward.default(g, x, None, None, None, mean.reshape(-1), rstd.reshape(-1),
                                                        True, 0.0, [True, False, False])[0]
    xhat = (x - mean) * rstd
    return rstd * (g - g.mean(dim=arg, keepdim=True) - xhat * (g * xhat).mean(dim=arg, keepdim=True))


def relu_grad(y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``g`` where the relu output ``y`` is positive, else 0 (one pass, no bool temporary)."""
    return _aten.threshold_backward.default(g, y, 0)


KERNELS = {"normalize": normalize, "normalize_grad": normalize_grad, "relu_grad": relu_grad}
