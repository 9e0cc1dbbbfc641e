"""Loads plugins from entry points, isolates failures, answers registry queries.

Environment variables:

* ``MITHRIL_STRICT_PLUGINS=1``: a plugin that fails raises instead of being reported.
* ``MITHRIL_DISABLE_PLUGINS=name1,name2``: do not load these entry points.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pluggy

from ..errors import BackendLoadError, BackendNotInstalledError, PluginError
from ..primitives.base import Primitive, registry
from . import hookspecs

ENTRY_POINT_GROUP = "mithril"

#: backends the project ships as separate distributions: name -> (class name, extra)
KNOWN_BACKENDS = {
    "numpy": ("NumpyBackend", "numpy"),
    "torch": ("TorchBackend", "torch"),
    "jax": ("JaxBackend", "jax"),
    "ggml": ("GGMLBackend", "ggml"),
}


@dataclass
class PluginInfo:
    """One plugin as seen by the manager."""

    name: str
    source: str  # "entry point <dist>", "in-process"
    status: str  # "loaded", "failed", "disabled"
    reason: str = ""
    backends: tuple[str, ...] = ()
    primitives: tuple[str, ...] = ()
    kernels: tuple[str, ...] = ()  # "backend:primitive"
    #: the distribution an entry point comes from ("" for a plugin registered in-process)
    distribution: str = ""

    def who(self) -> str:
        """``plugin 'swish' (distribution mithril-swish)``, for messages."""
        where = f"distribution {self.distribution}" if self.distribution else self.source
        return f"plugin {self.name!r} ({where})"


class MithrilPluginManager:
    """The one :class:`pluggy.PluginManager` of Mithril, with a failure-tolerant loader."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        #: name -> backend class, or a "module:Class" reference not imported yet
        self._backends: dict[str, type | str] = {}
        self._backend_plugin: dict[str, str] = {}
        self._kernels: dict[str, dict[str, Callable[..., Any]]] = {}
        #: lazily registered backends whose import failed: name -> the error (raised again on every ask)
        self._backend_failures: dict[str, BackendLoadError] = {}
        #: plugin name -> distribution, for the plugins being loaded from entry points
        self._dists: dict[str, str] = {}
        self._loaded = False
        #: bumped whenever plugins change, so backends rebuild their kernel tables
        self.generation = 0
        self._disabled = {n.strip() for n in os.environ.get("MITHRIL_DISABLE_PLUGINS", "").split(",") if n.strip()}

    @property
    def strict(self) -> bool:
        return os.environ.get("MITHRIL_STRICT_PLUGINS", "") not in ("", "0", "false", "False")

    # --------------------------------------------------------------- loading
    def load_entry_points(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        try:
            from importlib_metadata import entry_points
        except ImportError:  # pragma: no cover - Python >= 3.10 stdlib has group=
            from importlib.metadata import entry_points  # type: ignore[assignment]  # the stdlib twin of the backport

        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = getattr(ep.dist, "name", "?")
            source = f"entry point of {dist}"
            self._dists.setdefault(ep.name, dist)
            if ep.name in self._disabled:
                self.infos[ep.name] = PluginInfo(ep.name, source, "disabled", "disabled by the user", distribution=dist)
                continue
            if ep.name in self.infos:
                continue
            try:
                obj = ep.load()
            except Exception as e:
                self._fail(ep.name, source, f"import failed: {type(e).__name__}: {e}", e)
                continue
            self._add(obj, ep.name, source)

    def register(self, plugin: object, name: str | None = None) -> PluginInfo:
        """Register a plugin object in-process (notebooks, tests)."""
        self.load_entry_points()
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if name in self.infos and self.infos[name].status == "loaded":
            raise PluginError(f"a plugin named {name!r} is already registered")
        self._quiet = True
        try:
            self._add(plugin, name, "in-process")
        finally:
            self._quiet = False
        info = self.infos[name]
        if info.status == "failed":
            raise PluginError(f"plugin {name!r} failed: {info.reason}")
        return info

    def unregister(self, name: str) -> None:
        """Remove a loaded plugin and everything it registered."""
        self._drop(name)
        self.infos.pop(name, None)

    def disable(self, name: str) -> None:
        """Disable a plugin by name (now, and for entry points not loaded yet)."""
        self._disabled.add(name)
        if name in self.infos:
            self._drop(name)
            self.infos[name] = PluginInfo(
                name,
                self.infos[name].source,
                "disabled",
                "disabled by the user",
                distribution=self.infos[name].distribution,
            )

    def _drop(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin, name=name)
        for b, owner in list(self._backend_plugin.items()):
            if owner == name:
                del self._backends[b]
                del self._backend_plugin[b]
        for b, err in list(self._backend_failures.items()):
            if getattr(err, "plugin", None) == name:
                del self._backend_failures[b]
        info = self.infos.get(name)
        if info:
            for p in info.primitives:
                registry._table.pop(p, None)
                registry._origin.pop(p, None)
        self._kernels.clear()
        self.generation += 1

    def _fail(self, name: str, source: str, reason: str, exc: BaseException | None = None) -> None:
        self.infos[name] = PluginInfo(name, source, "failed", reason, distribution=self._dists.get(name, ""))
        if self.strict:
            raise PluginError(f"plugin {name!r} ({source}) failed: {reason}") from exc
        if getattr(self, "_quiet", False):
            return  # register() raises instead
        warnings.warn(f"mithril: plugin {name!r} ({source}) was not loaded: {reason}", RuntimeWarning, stacklevel=3)

    def _add(self, obj: object, name: str, source: str) -> None:
        api = getattr(obj, "MITHRIL_PLUGIN_API", hookspecs.PLUGIN_API)
        if api != hookspecs.PLUGIN_API:
            self._fail(name, source, f"written for plugin API {api}, this mithril has API {hookspecs.PLUGIN_API}")
            return
        backends: list[str] = []
        prims: list[str] = []
        try:
            self.pm.register(obj, name=name)
            staged_backends: dict[str, type | str] = {}

            def reg_backend(cls: type | str, name: str | None = None) -> None:
                if isinstance(cls, str):
                    if not name or ":" not in cls:
                        raise PluginError(
                            f"a lazy backend is registered as register('module:Class', name=...), "
                            f"got {cls!r} with name={name!r}"
                        )
                    bname = name
                else:
                    bname = getattr(cls, "name", "")
                    if not bname:
                        raise PluginError(f"backend class {cls!r} has no name")
                    if name is not None and name != bname:
                        raise PluginError(f"backend class {cls.__name__} is named {bname!r}, registered as {name!r}")
                if bname in self._backends and self._backends[bname] != cls:
                    raise PluginError(f"backend {bname!r} is already provided by {self._backend_plugin[bname]!r}")
                staged_backends[bname] = cls

            impl = self._impl(obj, "mithril_register_backends")
            if impl:
                impl(register=reg_backend)
            staged_prims: list[Primitive] = []
            impl = self._impl(obj, "mithril_register_primitives")
            if impl:
                impl(register=staged_prims.append)
            for prim in staged_prims:
                self._check_new_primitive(prim, name, source)
                registry.register(prim, origin=name)
                prims.append(prim.name)
            for bname, cls in staged_backends.items():
                self._backends[bname] = cls
                self._backend_plugin[bname] = name
                backends.append(bname)
        except Exception as e:
            if self.pm.get_plugin(name) is not None:
                self.pm.unregister(name=name)
            for p in prims:
                registry._table.pop(p, None)
            self._fail(name, source, f"{type(e).__name__}: {e}", e)
            return
        self._kernels.clear()
        self.generation += 1
        self.infos[name] = PluginInfo(
            name,
            source,
            "loaded",
            backends=tuple(backends),
            primitives=tuple(prims),
            distribution=self._dists.get(name, ""),
        )

    def _who(self, plugin: str, source: str | None = None) -> str:
        """``plugin 'a' (distribution mithril-a)`` (or ``(in-process)``) for a plugin or the core."""
        if plugin == "mithril":
            return "the core (distribution mithril)"
        info = self.infos.get(plugin)
        if info is not None:
            return info.who()
        dist = self._dists.get(plugin)
        return f"plugin {plugin!r} ({f'distribution {dist}' if dist else source or 'in-process'})"

    def _check_new_primitive(self, prim: Any, plugin: str, source: str) -> None:
        """A primitive another plugin (or the core) already defines is an error naming both."""
        if prim.name not in registry or registry.get(prim.name) is prim:
            return
        owner = registry.origin(prim.name)
        if owner == "mithril":
            fix = (
                f"rename the plugin's primitive (the core's {prim.name!r} cannot be replaced; to run it "
                f"faster on a backend, register a kernel for it instead)"
            )
        else:
            fix = (
                f"uninstall or disable one of them (MITHRIL_DISABLE_PLUGINS={plugin}, or "
                f"ml.plugins.disable({plugin!r})), or rename one primitive"
            )
        raise PluginError(
            f"primitive {prim.name!r} is defined twice: by {self._who(owner)} and by "
            f"{self._who(plugin, source)}; Mithril does not pick one by load order, so "
            f"{plugin!r} is not loaded. Fix: {fix}"
        )

    def _problem(self, plugin: str, message: str) -> None:
        """A registration mistake: a PluginError in strict mode or for an in-process plugin (your own code),
        otherwise a RuntimeWarning with the same message, kept in the plugin's ``reason``."""
        info = self.infos.get(plugin)
        if self.strict or info is None or info.source == "in-process":
            raise PluginError(message)
        if message not in info.reason:
            info.reason = "; ".join(filter(None, [info.reason, message]))
        warnings.warn(f"mithril: {message}", RuntimeWarning, stacklevel=4)

    @staticmethod
    def _impl(obj: object, hook: str) -> Callable[..., Any] | None:
        fn = getattr(obj, hook, None)
        return fn if callable(fn) else None

    # --------------------------------------------------------------- queries
    def backend_class(self, name: str) -> type:
        """The backend class named ``name``, importing its module on first use."""
        self.load_entry_points()
        entry = self._backends.get(name)
        if isinstance(entry, type):
            return entry
        if entry is not None:
            return self._resolve(name, entry)
        if name in self._backend_failures:  # the same error, with its reason, on every ask
            err = self._backend_failures[name]
            raise BackendLoadError(str(err)) from err.__cause__
        installed = sorted(self._backends)
        for info in self.infos.values():
            if info.status != "loaded" and info.name == name:
                if info.status == "disabled":
                    raise BackendNotInstalledError(
                        f"the {name!r} backend's plugin is disabled (ml.plugins.disable or "
                        f"MITHRIL_DISABLE_PLUGINS); installed backends: {installed}"
                    )
                raise BackendNotInstalledError(f"the {name!r} backend's plugin failed to load: {info.reason}")
        if name in KNOWN_BACKENDS:
            cls_name, extra = KNOWN_BACKENDS[name]
            dist = f"mithril-{extra}"
            raise BackendNotInstalledError(
                f"ml.{cls_name} is not available: its distribution {dist} is not installed. Install it from a "
                f"Mithril checkout with `pip install -c constraints.txt -e packages/{dist}`, or from wheels built "
                f"there with `pip install -c constraints.txt --find-links dist {dist}` (not from a package index: the "
                f"name `mithril` there belongs to an unrelated project)"
            )
        raise BackendNotInstalledError(
            f"no backend named {name!r} is installed; installed backends: {installed} "
            f"(a third-party backend registers through the 'mithril' entry-point group)"
        )

    def _resolve(self, name: str, ref: str) -> type:
        """Import a lazily registered backend; a failure disables it with the reason."""
        import importlib

        owner = self._backend_plugin[name]
        module_name, _, attr = ref.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
            if not (isinstance(cls, type) and getattr(cls, "name", None) == name):
                raise PluginError(f"{ref} is not a backend class named {name!r}")
        except Exception as e:
            del self._backends[name]
            del self._backend_plugin[name]
            reason = f"backend {name!r} ({ref}) failed to import: {type(e).__name__}: {e}"
            info = self.infos.get(owner)
            if info is not None:
                info.backends = tuple(b for b in info.backends if b != name)
                info.reason = "; ".join(filter(None, [info.reason, reason]))
                info.status = "failed"
            err = BackendLoadError(
                f"{self._who(owner)}: {reason}. Fix: install what {module_name} imports into this environment "
                f"(then restart Python), or disable the plugin (MITHRIL_DISABLE_PLUGINS={owner})"
            )
            err.plugin = owner  # type: ignore[attr-defined]  # an extra attribute for the CLI's report
            err.__cause__ = e
            self._backend_failures[name] = err
            raise err from e
        self._backends[name] = cls
        return cls

    def backend_failures(self) -> dict[str, str]:
        """Lazily registered backends whose import failed: name -> the reason."""
        return {name: str(err) for name, err in self._backend_failures.items()}

    def backend_names(self) -> list[str]:
        """Names of the registered backends, without importing any of them."""
        self.load_entry_points()
        return sorted(self._backends)

    def backends(self) -> dict[str, type]:
        """Every registered backend class (this imports each lazily registered backend)."""
        self.load_entry_points()
        out: dict[str, type] = {}
        for name in list(self._backends):
            try:
                out[name] = self.backend_class(name)
            except BackendNotInstalledError as e:
                warnings.warn(f"mithril: {e}", RuntimeWarning, stacklevel=2)
        return out

    def kernels_for(self, backend_name: str) -> dict[str, Callable[..., Any]]:
        self.load_entry_points()
        if backend_name not in self._kernels:
            table: dict[str, Callable[..., Any]] = {}
            owners: dict[str, str] = {}
            for plugin_name, plugin in self.pm.list_name_plugin():
                impl = self._impl(plugin, "mithril_register_kernels")
                if impl is None:
                    continue

                def reg(prim: str, fn: Callable[..., Any], _p: str = plugin_name) -> None:
                    problem = self._kernel_problem(_p, backend_name, prim, fn, owners.get(prim))
                    if problem is not None:
                        self._problem(_p, problem)
                        return
                    table[prim] = fn
                    owners[prim] = _p
                    info = self.infos.get(_p)
                    if info is not None and f"{backend_name}:{prim}" not in info.kernels:
                        info.kernels += (f"{backend_name}:{prim}",)

                try:
                    impl(backend_name=backend_name, register=reg)
                except PluginError:
                    raise
                except Exception as e:
                    if self.strict:
                        raise PluginError(f"plugin {plugin_name!r} failed to register kernels: {e}") from e
                    warnings.warn(
                        f"mithril: plugin {plugin_name!r} failed to register kernels for {backend_name!r}: {e}",
                        RuntimeWarning,
                        stacklevel=2,
                    )
            self._kernels[backend_name] = table
        return self._kernels[backend_name]

    def _kernel_problem(
        self, plugin: str, backend_name: str, prim_name: str, fn: Callable[..., Any], owner: str | None
    ) -> str | None:
        """What is wrong with one kernel registration, or None: the primitive must exist, no other plugin
        may have registered a kernel for it on this backend, and the kernel must take Mithril's call."""
        import difflib

        who = self._who(plugin)
        if prim_name not in registry:
            close = difflib.get_close_matches(prim_name, registry.names(), n=3)
            hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
            return (
                f"{who} registers a kernel for primitive {prim_name!r} on backend {backend_name!r}, but neither "
                f"the core nor any loaded plugin defines a primitive {prim_name!r}. Fix: {hint}check the name, "
                f"install (or enable) the distribution that defines it, or define it in the same plugin with "
                f"mithril_register_primitives"
            )
        if owner is not None and owner != plugin:
            return (
                f"two plugins register a kernel for primitive {prim_name!r} on backend {backend_name!r}: "
                f"{self._who(owner)} and {who}. Which one runs must not depend on load order: until this is "
                f"resolved the first one, {owner!r}'s, runs and {plugin!r}'s is ignored. Fix: uninstall or "
                f"disable one of them (MITHRIL_DISABLE_PLUGINS={plugin} or ={owner})"
            )
        problem = registry.get(prim_name).kernel_signature_problem(fn)
        if problem is not None:
            return (
                f"{who} registers a kernel {getattr(fn, '__qualname__', fn)!r} for primitive {prim_name!r} on "
                f"backend {backend_name!r} that cannot be called: {problem}. Fix: write it as "
                f"{registry.get(prim_name).kernel_call()} (inputs positional in that order, every attribute "
                f"as a keyword)"
            )
        return None

    def report(self) -> str:
        """A table of plugins: name, status, what each provides or why it failed."""
        self.load_entry_points()
        lines = []
        for info in sorted(self.infos.values(), key=lambda i: i.name):
            what = ", ".join(
                [f"backends: {', '.join(info.backends)}"] * bool(info.backends)
                + [f"primitives: {', '.join(info.primitives)}"] * bool(info.primitives)
            )
            tail = info.reason if info.status != "loaded" else "; ".join(filter(None, [what, info.reason]))
            lines.append(f"{info.name:<24} {info.status:<9} {info.source:<32} {tail}")
        return "\n".join(lines)


_manager: MithrilPluginManager | None = None


def plugin_manager() -> MithrilPluginManager:
    global _manager
    if _manager is None:
        _manager = MithrilPluginManager()
    return _manager


def _load_entry_points() -> None:
    plugin_manager().load_entry_points()


registry.on_unknown = _load_entry_points  # an unknown primitive: a plugin may define it


def _reset_for_tests() -> None:  # pragma: no cover - test helper
    global _manager
    _manager = None


__all__ = ["MithrilPluginManager", "PluginInfo", "plugin_manager"]
