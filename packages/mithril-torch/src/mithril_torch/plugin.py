"""The entry point registered under ``[project.entry-points.mithril]``."""

from __future__ import annotations

from collections.abc import Callable

from mithril.plugins.hookspecs import hookimpl

MITHRIL_PLUGIN_API = 1


@hookimpl
def mithril_register_backends(register: Callable[[type], None]) -> None:
    """Provide :class:`~mithril_torch.TorchBackend` as backend ``"torch"``."""
    from .backend import TorchBackend  # imports torch only when backends are asked for

    register(TorchBackend)
