"""Torch kernels of the indexing primitives (``mithril.primitives.indexing``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

Pair = tuple[int, int]


def gather_rows(weight: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``weight[indices]`` (embedding lookup)."""
    return weight[indices]


def scatter_add_rows(grad: torch.Tensor, indices: torch.Tensor, *, num_rows: int) -> torch.Tensor:
    """``zeros([num_rows, D])`` with the rows of ``grad`` added at ``indices`` (``index_add``)."""
    d = grad.shape[-1]
    out = grad.new_zeros((num_rows, d))
    return out.index_add_(0, indices.reshape(-1), grad.reshape(-1, d))


def gather_last(input: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``input[..., indices]``, one element of the last axis per position."""
    return torch.gather(input, -1, indices.unsqueeze(-1)).squeeze(-1)


def scatter_last(grad: torch.Tensor, indices: torch.Tensor, *, size: int) -> torch.Tensor:
    """``zeros([..., size])`` with ``grad`` written at ``indices`` of the last axis."""
    out = grad.new_zeros(tuple(grad.shape) + (size,))
    return out.scatter_(-1, indices.unsqueeze(-1), grad.unsqueeze(-1))


def unflatten(input: torch.Tensor, *, axis: int, sizes: Sequence[int]) -> torch.Tensor:
    return torch.unflatten(input, axis, tuple(sizes))


def reshape_as(input: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return input.reshape(like.shape)


def conv_transpose2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    *,
    stride: Pair = (1, 1),
    padding: Pair = (0, 0),
    output_padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
    groups: int = 1,
) -> torch.Tensor:
    return F.conv_transpose2d(input, weight, None, stride, padding, output_padding, groups, dilation)


def positions(like: torch.Tensor, *, axis: int = -1) -> torch.Tensor:
    """``0..n-1`` (int64, on ``like``'s device) for ``n = like.shape[axis]``."""
    return torch.arange(like.shape[axis], device=like.device)


def tril_mask(like: torch.Tensor, *, diagonal: int = 0) -> torch.Tensor:
    return torch.ones(tuple(like.shape[-2:]), dtype=torch.bool, device=like.device).tril(diagonal)


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
