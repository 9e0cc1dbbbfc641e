"""PyTorch state dicts to and from the params dict of a physical model.

``load_state_dict(state_dict, pm)`` checks a ``module.state_dict()`` (torch tensors
or NumPy arrays by name) against a compiled model and converts it to the params
dict that ``pm.evaluate`` takes: parameters and state (BatchNorm running
statistics) together, as ``pm.randomize_params()`` returns them.
``to_state_dict(params, backend)`` goes the other way, to NumPy arrays or CPU torch
tensors that ``module.load_state_dict`` accepts.

torch's ``num_batches_tracked`` buffers (BatchNorm's step counters) have no
counterpart in Mithril: entries whose last name component is
``num_batches_tracked`` are ignored unless the model has such a key. torch itself
accepts a state dict without them (it keeps the module's counters).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..dtypes import DType
from ..errors import ParamsError, ShapeUnknownError, UnsupportedError
from ._arrays import numpy_copy

if TYPE_CHECKING:
    from ..physical.model import PhysicalModel

#: the BatchNorm buffer torch has and Mithril has not
IGNORED_SUFFIX = "num_batches_tracked"

Rename = Mapping[str, str] | Callable[[str], str | None]


def _rename(state_dict: Mapping[str, Any], rename: Rename | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in state_dict.items():
        key = name if rename is None else rename(name) if callable(rename) else rename.get(name, name)
        if key is None:
            continue
        if key in out:
            raise ParamsError(f"load_state_dict: two state dict entries map to the name {key!r}")
        out[key] = value
    return out


def _model_shapes(model: PhysicalModel) -> dict[str, tuple[int, ...]]:
    try:
        return model.param_shapes
    except ShapeUnknownError:
        raise ShapeUnknownError(
            "load_state_dict: the model's parameter shapes are not known; compile it with the input shapes "
            "(compile(..., shapes={...}))"
        ) from None


def _shape_of(value: Any, backend: Any, what: str) -> tuple[int, ...]:
    """The shape of an entry without copying it."""
    shape = getattr(value, "shape", None)
    if shape is None:
        shape = numpy_copy(value, backend, what).shape
    return tuple(int(d) for d in shape)


def _problems(
    shapes: Mapping[str, tuple[int, ...]], model_shapes: Mapping[str, tuple[int, ...]], strict: bool
) -> list[str]:
    """Missing keys, unexpected keys (strict) and shape mismatches, one line each."""
    lines = []
    missing = sorted(set(model_shapes) - set(shapes))
    if missing and strict:
        lines.append(f"missing keys (in the model, not in the state dict): {missing}")
    unexpected = sorted(set(shapes) - set(model_shapes))
    if unexpected and strict:
        lines.append(f"unexpected keys (in the state dict, not in the model): {unexpected}")
    for key in sorted(set(shapes) & set(model_shapes)):
        got, want = shapes[key], tuple(model_shapes[key])
        if got != want:
            lines.append(f"shape mismatch for {key!r}: state dict {list(got)}, model {list(want)}")
    return lines


def load_state_dict(
    state_dict: Mapping[str, Any], model: PhysicalModel, *, strict: bool = True, rename: Rename | None = None
) -> dict[str, Any]:
    """The params dict of ``model`` (a physical model) filled from a torch-style ``state_dict``.

    ``state_dict`` maps names to torch tensors (any device, grad or not: they are
    detached and copied through the CPU), NumPy arrays or arrays of the model's
    backend. ``rename`` maps state-dict names to the model's: a dict (names not in
    it are kept) or a function (None drops the entry).

    Returns ``{name: backend array}`` for the model's parameters and state
    (``model.param_keys`` and ``model.state_keys``), floats in the backend's
    dtype: the dict ``model.evaluate`` takes. With ``strict`` (the default) every
    key of the model must be in the state dict and every entry of the state dict
    in the model; with ``strict=False`` unexpected entries are skipped and the
    result holds only the keys found (complete it, e.g. from
    ``model.randomize_params()``). Entries named ``...num_batches_tracked`` are
    ignored. Raises :class:`~mithril.errors.ParamsError` naming every missing or
    unexpected key and every shape mismatch (with both shapes) before converting
    anything.
    """
    if not isinstance(state_dict, Mapping):
        raise ParamsError(
            f"load_state_dict: state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}"
        )
    backend = model.backend
    model_shapes = _model_shapes(model)
    entries = {
        k: v
        for k, v in _rename(state_dict, rename).items()
        if k in model_shapes or k.rsplit(".", 1)[-1] != IGNORED_SUFFIX
    }
    shapes = {k: _shape_of(v, backend, f"state_dict[{k!r}]") for k, v in entries.items()}
    problems = _problems(shapes, model_shapes, strict)
    if problems:
        raise ParamsError("load_state_dict: the state dict does not fit the model:\n  " + "\n  ".join(problems))
    out: dict[str, Any] = {}
    for key in (*model.param_keys, *model.state_keys):
        if key in entries:
            out[key] = _to_backend(numpy_copy(entries[key], backend, f"state_dict[{key!r}]"), backend, key)
    return out


def _to_backend(arr: np.ndarray, backend: Any, key: str) -> Any:
    """Floats in the backend's dtype; ints and bools keep theirs."""
    if arr.dtype.kind == "f":
        return backend.array(arr)
    try:
        dtype = DType(arr.dtype.name)
    except ValueError:
        raise UnsupportedError(
            f"load_state_dict: state_dict[{key!r}] has dtype {arr.dtype}, which Mithril does not support"
        ) from None
    return backend.array(arr, dtype)


def to_state_dict(params: Mapping[str, Any], backend: Any = None, *, as_torch: bool = False) -> dict[str, Any]:
    """A torch-style state dict of ``params`` (parameters and state, by name).

    Values are NumPy copies with the arrays' own dtypes, so float data is kept bit
    for bit; ``backend`` converts its arrays (without it, torch tensors are
    detached and copied through the CPU and anything else goes through
    ``np.asarray``). With ``as_torch=True`` the values are CPU torch tensors
    (needs torch), ready for ``module.load_state_dict``.
    """
    if not isinstance(params, Mapping):
        raise ParamsError(f"to_state_dict: params must be a mapping of names to arrays, got {type(params).__name__}")
    out: dict[str, Any] = {}
    for name, value in params.items():
        if not isinstance(name, str) or not name:
            raise ParamsError(f"to_state_dict: names must be non-empty strings, got {name!r}")
        out[name] = numpy_copy(value, backend, f"params[{name!r}]")
    if not as_torch:
        return out
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        raise UnsupportedError("to_state_dict(as_torch=True) needs torch: pip install torch") from None
    return {name: _torch_from_numpy(torch, arr) for name, arr in out.items()}


def _torch_from_numpy(torch: Any, arr: np.ndarray) -> Any:
    if arr.dtype.name == "bfloat16":  # ml_dtypes' bfloat16 (JAX): reinterpret the bits
        return torch.from_numpy(arr.view(np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(arr)


__all__ = ["IGNORED_SUFFIX", "load_state_dict", "to_state_dict"]
