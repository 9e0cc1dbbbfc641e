"""Mapping between Mithril's logical dtypes and JAX dtypes."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from mithril.dtypes import DType

from .x64 import int_dtype

_TO_JAX: dict[DType, Any] = {
    DType.bool: jnp.bool_,
    DType.int32: jnp.int32,
    DType.float16: jnp.float16,
    DType.bfloat16: jnp.bfloat16,
    DType.float32: jnp.float32,
    DType.float64: jnp.float64,
}


def to_jax_dtype(dtype: DType) -> Any:
    """The JAX dtype for ``dtype``; int64 is int32 while 64-bit types are off."""
    if dtype is DType.int64:
        return int_dtype()
    return _TO_JAX[dtype]


def from_jax_dtype(dt: Any) -> DType:
    """The logical dtype of a JAX / NumPy dtype (TypeError for others: uint8, complex...)."""
    name = np.dtype(dt).name
    if name == "bool":
        return DType.bool
    try:
        return DType(name)
    except ValueError:
        raise TypeError(f"JAX dtype {name} has no Mithril equivalent") from None


__all__ = ["from_jax_dtype", "to_jax_dtype"]
