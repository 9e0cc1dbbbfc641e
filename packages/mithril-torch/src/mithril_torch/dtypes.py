"""Mapping between Mithril's logical dtypes and torch dtypes."""

from __future__ import annotations

import torch

from mithril.dtypes import DType

TORCH_DTYPES: dict[DType, torch.dtype] = {
    DType.bool: torch.bool,
    DType.int32: torch.int32,
    DType.int64: torch.int64,
    DType.float16: torch.float16,
    DType.bfloat16: torch.bfloat16,
    DType.float32: torch.float32,
    DType.float64: torch.float64,
}
"""ml dtype -> torch dtype."""

ML_DTYPES: dict[torch.dtype, DType] = {v: k for k, v in TORCH_DTYPES.items()}
"""torch dtype -> ml dtype (only the dtypes Mithril knows)."""


def to_torch(dtype: DType) -> torch.dtype:
    """The torch dtype of an ml dtype."""
    return TORCH_DTYPES[dtype]


def to_ml(dtype: torch.dtype) -> DType:
    """The ml dtype of a torch dtype; ``TypeError`` for one Mithril has no name for."""
    try:
        return ML_DTYPES[dtype]
    except KeyError:
        raise TypeError(f"torch dtype {dtype} has no Mithril equivalent") from None
