"""Checkpoints of a training run in safetensors (no pickle): params, optimizer state, step, seed.

The file holds ``params/<name>`` and ``optimizer/<name>`` arrays with their own dtypes and
JSON-free string metadata (format, step, seed, optimizer). A checkpoint written on one
backend loads on every other; on the same backend, resuming from it continues exactly as
the uninterrupted run would (the step's random draws depend on seed and step only).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CheckpointError, UnsupportedError
from .state import TrainState

if TYPE_CHECKING:  # pragma: no cover
    from .step import TrainingStep

FORMAT = "mithril-checkpoint"
VERSION = "1"


def _library() -> Any:
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:  # pragma: no cover - depends on the environment
        raise UnsupportedError("checkpoints need the 'safetensors' package") from None
    return safetensors


def save_checkpoint(path: str | os.PathLike[str], state: TrainState, step: TrainingStep) -> None:
    """Write ``state`` (of the training step ``step``) to ``path``, atomically."""
    st = _library()
    be = step.backend
    arrays: dict[str, np.ndarray] = {}
    with be.scope():
        for prefix, table in (("params", state.params), ("optimizer", state.optimizer)):
            for name, value in table.items():
                arrays[f"{prefix}/{name}"] = np.array(be.to_numpy(value), order="C")  # 0-d stays 0-d
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "step": str(state.step),
        "seed": str(state.seed),
        "optimizer": type(step.optimizer).__name__,
        "backend": be.name,
        "dtype": be.dtype.value,
    }
    target = os.fspath(path)
    tmp = f"{target}.tmp-{os.getpid()}"
    try:
        st.numpy.save_file(arrays, tmp, metadata=metadata)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path: str | os.PathLike[str], step: TrainingStep) -> TrainState:
    """Read a checkpoint for ``step`` (any backend's); every array is checked against the step."""
    st = _library()
    where = f"checkpoint {os.fspath(path)!r}"
    try:
        with st.safe_open(os.fspath(path), framework="np") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise CheckpointError(f"{where} is not a Mithril checkpoint (format {metadata.get('format')!r})")
            if metadata.get("version") != VERSION:
                raise CheckpointError(f"{where} has version {metadata.get('version')!r}; this Mithril reads {VERSION}")
            arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except CheckpointError:
        raise
    except Exception as e:  # safetensors raises its own error types for unreadable files
        raise CheckpointError(f"{where} cannot be read: {type(e).__name__}: {e}") from None
    saved_opt = metadata.get("optimizer")
    if saved_opt != type(step.optimizer).__name__:
        raise CheckpointError(f"{where} holds {saved_opt} state; this step uses {type(step.optimizer).__name__}")
    params = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("params/")}
    opt = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("optimizer/")}
    want_params = {**step.physical.param_shapes}
    want_opt = step.state_shapes
    for what, got, want in (("params", params, want_params), ("optimizer state", opt, want_opt)):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        if missing or extra:
            raise CheckpointError(
                f"{where} is from another model or optimizer: its {what} lack {missing[:8]} "
                f"and have unknown {extra[:8]}"
            )
        for k, arr in got.items():
            if tuple(arr.shape) != tuple(want[k]):
                raise CheckpointError(
                    f"{where}: {what} {k!r} has shape {list(arr.shape)}, this step needs {list(want[k])}"
                )
    try:
        n_step, seed = int(metadata["step"]), int(metadata["seed"])
    except (KeyError, ValueError):
        raise CheckpointError(f"{where}: step/seed metadata missing or not integers") from None
    be = step.backend
    with be.scope():
        return TrainState(
            {k: be.array(v) for k, v in params.items()}, {k: be.array(v) for k, v in opt.items()}, n_step, seed
        )


__all__ = ["load_checkpoint", "save_checkpoint"]
