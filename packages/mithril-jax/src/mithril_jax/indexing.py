"""JAX kernels of the indexing primitives (``mithril.primitives.indexing``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from . import nn_kernels

Array = jax.Array
Pair = tuple[int, int]


def gather_rows(weight: Array, indices: Array) -> Array:
    """``weight[indices]`` (embedding lookup)."""
    return jnp.take(weight, indices, axis=0)


def scatter_add_rows(grad: Array, indices: Array, *, num_rows: int) -> Array:
    """``zeros([num_rows, D])`` with the rows of ``grad`` added at ``indices`` (repeats accumulate)."""
    d = grad.shape[-1]
    return jnp.zeros((int(num_rows), d), grad.dtype).at[jnp.reshape(indices, -1)].add(jnp.reshape(grad, (-1, d)))


def gather_last(input: Array, indices: Array) -> Array:
    """``input[..., indices]``, one element of the last axis per position."""
    return jnp.take_along_axis(input, jnp.asarray(indices)[..., None], axis=-1)[..., 0]


def scatter_last(grad: Array, indices: Array, *, size: int) -> Array:
    """``zeros([..., size])`` with ``grad`` written at ``indices`` of the last axis."""
    hit = jnp.asarray(indices)[..., None] == jnp.arange(int(size))
    return jnp.where(hit, jnp.asarray(grad)[..., None], jnp.zeros((), jnp.asarray(grad).dtype))


def unflatten(input: Array, *, axis: int, sizes: Sequence[int]) -> Array:
    ax = int(axis) % input.ndim
    return jnp.reshape(input, input.shape[:ax] + tuple(int(s) for s in sizes) + input.shape[ax + 1 :])


def reshape_as(input: Array, like: Array) -> Array:
    return jnp.reshape(input, jnp.shape(like))


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
    """As ``torch.nn.functional.conv_transpose2d`` (no bias): conv2d's input gradient."""
    n, _, h, w = input.shape
    hw = [
        (size - 1) * stride[i] - 2 * padding[i] + dilation[i] * (weight.shape[2 + i] - 1) + output_padding[i] + 1
        for i, size in enumerate((h, w))
    ]
    shape: Any = (n, weight.shape[1] * groups, hw[0], hw[1])
    return nn_kernels.conv2d_input_grad(
        input, weight, input_shape=shape, stride=stride, padding=padding, dilation=dilation, groups=groups
    )


def positions(like: Array, *, axis: int = -1) -> Array:
    """``0..n-1`` (JAX's default int) for ``n = like.shape[axis]``."""
    return jnp.arange(jnp.shape(like)[axis])


def tril_mask(like: Array, *, diagonal: int = 0) -> Array:
    return jnp.tril(jnp.ones(jnp.shape(like)[-2:], jnp.bool_), int(diagonal))


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
