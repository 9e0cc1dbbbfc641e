"""Batches for ``fit``: arrays (NumPy, any backend's, or dicts of them) or an iterable of batch dicts."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ..errors import TrainingError


def host_array(x: Any, backend: Any, what: str) -> np.ndarray:
    """``x`` as a NumPy array (integers as int64, the models' index dtype)."""
    if isinstance(x, np.ndarray):
        arr = x
    elif backend.is_array(x):
        arr = backend.to_numpy(x)
    else:
        try:
            arr = np.asarray(x)
        except Exception as e:
            raise TrainingError(f"{what}: cannot read {type(x).__name__} as an array ({e})") from None
    if arr.dtype.kind not in "fiub":
        raise TrainingError(f"{what}: arrays of dtype {arr.dtype} cannot be training data")
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.int64, copy=False)
    if arr.ndim == 0:
        raise TrainingError(f"{what}: a 0-d array has no batch axis")
    return arr


class ArrayData:
    """Named host arrays with a common first (batch) axis, cut into batches."""

    def __init__(self, arrays: Mapping[str, Any], backend: Any) -> None:
        self.backend = backend
        self.arrays = {k: host_array(v, backend, f"data[{k!r}]") for k, v in arrays.items()}
        sizes = {k: a.shape[0] for k, a in self.arrays.items()}
        if len(set(sizes.values())) > 1:
            raise TrainingError(f"the data's arrays differ in their first (batch) axis: {sizes}")
        self.size = next(iter(sizes.values())) if sizes else 0
        if self.size == 0:
            raise TrainingError("the data is empty")

    def feature_shapes(self) -> dict[str, list[int | None]]:
        """Shapes with a free batch axis, for compiling."""
        return {k: [None, *a.shape[1:]] for k, a in self.arrays.items()}

    def n_batches(self, batch_size: int, drop_remainder: bool = False) -> int:
        return self.size // batch_size if drop_remainder else math.ceil(self.size / batch_size)

    def batch_shapes(self, batch_size: int) -> dict[str, tuple[int, ...]]:
        """The shapes of a full batch."""
        return {k: (batch_size, *a.shape[1:]) for k, a in self.arrays.items()}

    def batches(
        self, batch_size: int, *, shuffle: bool, seed: int | None, drop_remainder: bool = False
    ) -> Iterator[dict[str, Any]]:
        for batch, _ in self.sized_batches(batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop_remainder):
            yield batch

    def sized_batches(
        self, batch_size: int, *, shuffle: bool, seed: int | None, drop_remainder: bool = False, pad: bool = False
    ) -> Iterator[tuple[dict[str, Any], int]]:
        """``(batch, real rows)``; ``pad``: a last, smaller batch is filled up to ``batch_size`` with
        copies of its own rows (so every padded value is one a real row has too)."""
        order = np.random.default_rng(seed).permutation(self.size) if shuffle else np.arange(self.size)
        be = self.backend
        stop = self.size - self.size % batch_size if drop_remainder else self.size
        if stop == 0:
            raise TrainingError(f"drop_remainder: {self.size} examples make no batch of {batch_size}")
        for start in range(0, stop, batch_size):
            idx = order[start : start + batch_size]
            rows = len(idx)
            if pad and rows < batch_size:
                idx = np.concatenate([idx, idx[np.arange(batch_size - rows) % rows]])
            if not shuffle and len(idx) == rows:
                yield {k: be.array(a[start : start + rows]) for k, a in self.arrays.items()}, rows
            else:
                yield {k: be.array(a[idx]) for k, a in self.arrays.items()}, rows


class IterableData:
    """An iterable (or a function returning one) of batch dicts, read anew every epoch."""

    def __init__(
        self, source: Iterable[Mapping[str, Any]] | Callable[[], Iterable[Mapping[str, Any]]], backend: Any
    ) -> None:
        self.source = source
        self.backend = backend

    def n_batches(self, batch_size: int, drop_remainder: bool = False) -> int | None:
        try:
            return len(self.source)  # type: ignore[arg-type]  # any source: a TypeError says it has no len
        except TypeError:
            return None

    def sized_batches(
        self, batch_size: int, *, shuffle: bool, seed: int | None, drop_remainder: bool = False, pad: bool = False
    ) -> Iterator[tuple[dict[str, Any], int]]:
        """``(batch, its rows)``; batches from an iterable are never padded."""
        for batch in self.batches(batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop_remainder):
            yield batch, batch_size_of(batch, self.backend)

    def batches(
        self, batch_size: int, *, shuffle: bool, seed: int | None, drop_remainder: bool = False
    ) -> Iterator[dict[str, Any]]:
        src = self.source() if callable(self.source) else self.source
        be = self.backend
        for i, batch in enumerate(src):
            if not isinstance(batch, Mapping):
                raise TrainingError(f"batch {i} of the data is a {type(batch).__name__}, not a dict of arrays")
            yield {
                k: v if be.is_array(v) else be.array(host_array(v, be, f"batch {i}[{k!r}]")) for k, v in batch.items()
            }


def as_data(x: Any, y: Any, backend: Any, *, inputs: list[str], target: str | None) -> ArrayData | IterableData:
    """The data of ``fit(x, y)``: arrays keyed by the model's inputs and the target, or batches."""
    if isinstance(x, Mapping):
        arrays = dict(x)
    elif y is None and not hasattr(x, "shape") and (callable(x) or isinstance(x, Iterable)):
        return IterableData(x, backend)
    else:
        model_inputs = [k for k in inputs if k != target]
        if len(model_inputs) != 1:
            raise TrainingError(f"the model has inputs {model_inputs}: give x as a dict keyed by them")
        arrays = {model_inputs[0]: x}
    if y is not None:
        if target is None:
            raise TrainingError("the model computes its own loss: give the targets inside x, not as y")
        if target in arrays:
            raise TrainingError(f"the target {target!r} is given twice (in x and as y)")
        arrays[target] = y
    return ArrayData(arrays, backend)


def batch_size_of(batch: Mapping[str, Any], backend: Any) -> int:
    for v in batch.values():
        shape = backend.shape_of(v)
        if shape:
            return int(shape[0])
    return 1


__all__ = ["ArrayData", "IterableData", "as_data", "batch_size_of", "host_array"]
