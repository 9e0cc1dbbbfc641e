"""Registers :class:`~mithril_numpy.backend.NumpyBackend` with Mithril (entry point ``numpy``)."""

from __future__ import annotations

from collections.abc import Callable

from mithril.plugins.hookspecs import hookimpl

MITHRIL_PLUGIN_API = 1


@hookimpl
def mithril_register_backends(register: Callable[..., None]) -> None:
    """Provide ``NumpyBackend`` as backend ``"numpy"``; its module (and numpy) is imported on first use."""
    register("mithril_numpy.backend:NumpyBackend", name="numpy")
