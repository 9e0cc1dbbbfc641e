"""The Mithril plugin of this distribution: registers :class:`JaxBackend` as "jax"."""

from __future__ import annotations

from collections.abc import Callable

from mithril.plugins import hookimpl

MITHRIL_PLUGIN_API = 1


@hookimpl
def mithril_register_backends(register: Callable[..., None]) -> None:
    """Provide ``JaxBackend`` as backend ``"jax"``; its module (and jax) is imported on first use."""
    register("mithril_jax.backend:JaxBackend", name="jax")
