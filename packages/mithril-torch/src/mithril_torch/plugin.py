"""The entry point registered under ``[project.entry-points.mithril]``."""

from __future__ import annotations

from collections.abc import Callable

from mithril.plugins.hookspecs import hookimpl

MITHRIL_PLUGIN_API = 1


@hookimpl
def mithril_register_backends(register: Callable[..., None]) -> None:
    """Provide ``TorchBackend`` as backend ``"torch"``; its module (and torch) is imported on first use."""
    register("mithril_torch.backend:TorchBackend", name="torch")
