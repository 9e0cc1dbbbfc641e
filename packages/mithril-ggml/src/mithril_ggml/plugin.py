"""The ``mithril`` entry point of mithril-ggml: registers :class:`GGMLBackend`."""

from __future__ import annotations

from collections.abc import Callable

from mithril.plugins.hookspecs import hookimpl

MITHRIL_PLUGIN_API = 1


@hookimpl
def mithril_register_backends(register: Callable[[type], None]) -> None:
    from .backend import GGMLBackend

    register(GGMLBackend)
