"""The hook specifications: the only seam between the core and its plugins.

A plugin is a module (or any object) with functions named like these hooks,
decorated with :data:`mithril.hookimpl`, registered under the ``mithril``
entry-point group::

    [project.entry-points.mithril]
    my_plugin = "my_package.plugin"

A plugin may set ``MITHRIL_PLUGIN_API = 1`` to state the hook API version it
was written for; a different major version is reported as incompatible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "mithril"
PLUGIN_API = 1

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def mithril_register_backends(register: Callable[..., None]) -> None:
    """Call ``register(BackendSubclass)`` for each backend this plugin provides.

    Prefer the lazy form ``register("package.module:BackendClass", name="mybackend")``:
    the module is imported only when that backend is first asked for, so creating
    one backend does not import every installed framework.
    """


@hookspec
def mithril_register_primitives(register: Callable[[Any], None]) -> None:
    """Call ``register(primitive)`` for each :class:`mithril.Primitive` defined here."""


@hookspec
def mithril_register_kernels(backend_name: str, register: Callable[[str, Callable[..., Any]], None]) -> None:
    """For backend ``backend_name``, call ``register(primitive_name, kernel)``."""
