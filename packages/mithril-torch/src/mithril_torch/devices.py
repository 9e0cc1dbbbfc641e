"""Parsing and validating the ``device`` a :class:`~mithril_torch.TorchBackend` runs on."""

from __future__ import annotations

import torch

from mithril.dtypes import DType
from mithril.errors import UnsupportedError

SUPPORTED_DEVICE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(device: str | torch.device, dtype: DType) -> torch.device:
    """Check that ``device`` ('cpu', 'cuda', 'cuda:N' or 'mps') exists here and supports ``dtype``.

    Returns a canonical :class:`torch.device`: 'cuda' becomes 'cuda:<current index>' so
    that it compares equal to the ``.device`` of the tensors created on it.
    Raises :class:`~mithril.errors.UnsupportedError` with the reason otherwise.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise UnsupportedError(
            f"TorchBackend: invalid device {device!r} (expected 'cpu', 'cuda', 'cuda:N' or 'mps'): {e}"
        ) from None
    if dev.type not in SUPPORTED_DEVICE_TYPES:
        raise UnsupportedError(
            f"TorchBackend: device type {dev.type!r} is not supported; use one of {list(SUPPORTED_DEVICE_TYPES)}"
        )
    if dev.type == "cpu":
        if dev.index not in (None, 0):
            raise UnsupportedError(f"TorchBackend: device {device!r}: there is only one CPU device, 'cpu'")
        return torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "torch was built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise UnsupportedError(f"TorchBackend: device {device!r} is not available ({why}); use device='cpu'")
        count = torch.cuda.device_count()
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if not 0 <= index < count:
            raise UnsupportedError(
                f"TorchBackend: device {device!r} does not exist; {count} CUDA device(s) visible (cuda:0..cuda:{count - 1})"
            )
        return torch.device("cuda", index)
    # mps
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        raise UnsupportedError(f"TorchBackend: device {device!r} is not available (no Apple MPS support here)")
    if dtype is DType.float64:
        raise UnsupportedError("TorchBackend: the 'mps' device does not support float64; use float32")
    return torch.device("mps", 0)  # tensors on MPS report index 0
