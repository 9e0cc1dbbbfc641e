"""The ``mithril`` entry point of mithril-ggml: registers :class:`GGMLBackend`."""

from __future__ import annotations

from collections.abc import Callable

from mithril.plugins.hookspecs import hookimpl

MITHRIL_PLUGIN_API = 1


@hookimpl
def mithril_register_backends(register: Callable[..., None]) -> None:
    """Provide ``GGMLBackend`` as backend ``"ggml"``; its module (and ggml) is imported on first use."""
    register("mithril_ggml.backend:GGMLBackend", name="ggml")
