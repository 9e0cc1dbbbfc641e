"""Turn a device string ("cpu", "gpu", "tpu", "gpu:1") into a ``jax.Device``."""

from __future__ import annotations

import jax

from mithril.errors import UnsupportedError

PLATFORMS = ("cpu", "gpu", "tpu")


def resolve_device(spec: str) -> jax.Device:
    """The JAX device named by ``spec``; a clear error when it does not exist here."""
    if not isinstance(spec, str):
        raise UnsupportedError(f"JaxBackend: device must be a string such as 'cpu' or 'gpu:0', got {spec!r}")
    platform, _, index_text = spec.strip().lower().partition(":")
    if platform not in PLATFORMS:
        raise UnsupportedError(
            f"JaxBackend: unknown device {spec!r}; use one of {', '.join(PLATFORMS)} (optionally ':N', e.g. 'gpu:1')"
        )
    try:
        index = int(index_text) if index_text else 0
    except ValueError:
        raise UnsupportedError(f"JaxBackend: bad device index in {spec!r}; expected e.g. '{platform}:0'") from None
    try:
        devices = jax.local_devices(backend=platform)  # this process's (all of them, with one process)
    except RuntimeError:
        present = [p for p in PLATFORMS if p != platform and _available(p)]
        hint = (
            ' (for NVIDIA GPUs install a CUDA build of JAX, e.g. pip install -U "jax[cuda12]")'
            if platform == "gpu"
            else ""
        )
        raise UnsupportedError(
            f"JaxBackend: device {spec!r} is not available: this JAX has no {platform!r} platform "
            f"(platforms present: {', '.join(present)}){hint}"
        ) from None
    if not 0 <= index < len(devices):
        raise UnsupportedError(
            f"JaxBackend: device {spec!r} does not exist; JAX sees {len(devices)} {platform} device(s) "
            f"(indices 0..{len(devices) - 1})"
        )
    return devices[index]


def _available(platform: str) -> bool:
    try:
        return bool(jax.devices(platform))
    except RuntimeError:
        return False


__all__ = ["PLATFORMS", "resolve_device"]
