"""Plugins: discovery through entry points, in-process registration, reporting.

>>> import mithril as ml
>>> print(ml.plugins.report())        # doctest: +SKIP
"""

from __future__ import annotations

from .hookspecs import PLUGIN_API, hookimpl, hookspec
from .manager import ENTRY_POINT_GROUP, PluginInfo, plugin_manager


def register(plugin: object, name: str | None = None) -> PluginInfo:
    """Register a plugin object (module, class or instance) in this process."""
    return plugin_manager().register(plugin, name)


def unregister(name: str) -> None:
    """Remove an in-process or loaded plugin by name."""
    plugin_manager().unregister(name)


def disable(name: str) -> None:
    """Disable a plugin by name; ``MITHRIL_DISABLE_PLUGINS`` does the same from the environment."""
    plugin_manager().disable(name)


def list_plugins() -> list[PluginInfo]:
    """Every plugin seen: loaded, failed (with the reason) or disabled."""
    pm = plugin_manager()
    pm.load_entry_points()
    return sorted(pm.infos.values(), key=lambda i: i.name)


def failed() -> list[PluginInfo]:
    return [i for i in list_plugins() if i.status == "failed"]


def report() -> str:
    """A readable table of plugins."""
    return plugin_manager().report()


def backends() -> dict[str, type]:
    """Installed backends by name (imports every one of them)."""
    return plugin_manager().backends()


def backend_names() -> list[str]:
    """Names of the installed backends, without importing them."""
    return plugin_manager().backend_names()


__all__ = [
    "ENTRY_POINT_GROUP",
    "PLUGIN_API",
    "PluginInfo",
    "backend_names",
    "backends",
    "disable",
    "failed",
    "hookimpl",
    "hookspec",
    "list_plugins",
    "plugin_manager",
    "register",
    "report",
    "unregister",
]
