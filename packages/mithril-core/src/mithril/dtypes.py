"""Logical data types shared by every backend."""

from __future__ import annotations

import builtins
import enum
from typing import Any

import numpy as np


class DType(enum.Enum):
    """A logical dtype; backends map it to their own."""

    bool = "bool"
    int32 = "int32"
    int64 = "int64"
    float16 = "float16"
    bfloat16 = "bfloat16"
    float32 = "float32"
    float64 = "float64"

    @property
    def is_float(self) -> builtins.bool:  # `bool` here is the member DType.bool
        return self in _FLOATS

    @property
    def is_int(self) -> builtins.bool:
        return self in (DType.int32, DType.int64)

    @property
    def kind(self) -> str:
        """'float', 'int' or 'bool'."""
        return "float" if self.is_float else "int" if self.is_int else "bool"

    @property
    def numpy(self) -> np.dtype[Any]:
        if self is DType.bfloat16:
            raise TypeError("NumPy has no bfloat16")
        dtype: np.dtype[Any] = np.dtype(self.value)
        return dtype

    def __repr__(self) -> str:
        return f"ml.{self.value}"


_FLOATS = {DType.float16, DType.bfloat16, DType.float32, DType.float64}

bool_ = DType.bool
int32 = DType.int32
int64 = DType.int64
float16 = DType.float16
bfloat16 = DType.bfloat16
float32 = DType.float32
float64 = DType.float64


def dtype_of_numpy(dt: np.dtype) -> DType:
    """Map a NumPy dtype to the logical one."""
    dt = np.dtype(dt)
    if dt == np.bool_:
        return DType.bool
    try:
        return DType(dt.name)
    except ValueError:
        raise TypeError(f"unsupported NumPy dtype {dt}") from None
