"""``mithril backends``: each backend, whether it imports, its devices and dtypes.

Device probes import the framework (torch, jax) and run only inside this command and ``mithril info``.
A probe is chosen by the backend class's lineage, so a third-party subclass of ``TorchBackend``
lists torch's devices; a backend of another lineage may offer ``available_devices()`` (a callable
class attribute returning device strings), or its devices are reported as unknown.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from ._common import SHIPPED_BACKENDS, CLIError, install_hint, plugin_distributions, print_json, table, version_of

HELP = "list backends: whether each imports, its devices and dtypes"

Device = dict[str, Any]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "backends",
        help=HELP,
        description=HELP + ". Importing a backend imports its framework (torch, jax): this takes a few seconds.",
    )
    p.add_argument("names", nargs="*", metavar="BACKEND", help="only these backends (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-devices", action="store_true", help="do not probe devices")
    p.set_defaults(run=run)


# ------------------------------------------------------------------ device probes
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the warnings and log lines frameworks print while looking for accelerators."""
    loggers = [logging.getLogger(n) for n in ("jax._src.xla_bridge", "jax", "torch")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _cpu_devices() -> list[Device]:
    return [{"device": "cpu"}]


def _ggml_devices() -> list[Device]:
    return [{"device": "cpu", "threads": os.cpu_count()}]


def _torch_devices() -> list[Device]:
    import torch

    devices: list[Device] = [{"device": "cpu"}]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append(
                {"device": f"cuda:{i}", "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
            )
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append({"device": "mps"})
    return devices


def _jax_devices() -> list[Device]:
    import jax

    devices: list[Device] = []
    for platform in ("cpu", "gpu", "tpu"):
        try:
            found = jax.devices(platform)
        except RuntimeError:  # no such platform in this jaxlib
            continue
        for i, d in enumerate(found):
            entry: Device = {"device": f"{platform}:{i}", "name": str(getattr(d, "device_kind", platform))}
            devices.append(entry)
    return devices


#: probe by the top-level module of a class in the backend's lineage
PROBES: dict[str, Callable[[], list[Device]]] = {
    "mithril_numpy": _cpu_devices,
    "mithril_torch": _torch_devices,
    "mithril_jax": _jax_devices,
    "mithril_ggml": _ggml_devices,
}


def devices_of(cls: type) -> list[Device] | None:
    """The devices a backend class can run on, or None when it does not say."""
    own = getattr(cls, "available_devices", None)
    if callable(own):
        with _quiet():
            return [d if isinstance(d, dict) else {"device": str(d)} for d in own()]
    for klass in cls.__mro__:
        probe = PROBES.get(klass.__module__.partition(".")[0])
        if probe is not None:
            with _quiet():
                return probe()
    return None


def devices_text(devices: list[Device] | None) -> str:
    """``cpu``, ``cpu:0..7``, ``cuda:0 (NVIDIA H200, 139.8 GiB)``..."""
    if devices is None:
        return "(not reported by the backend)"
    parts: list[str] = []
    run: list[Device] = []

    def flush() -> None:
        if not run:
            return
        first = run[0]
        label = first["device"]
        if len(run) > 1:
            label = f"{label}..{run[-1]['device'].rpartition(':')[2]}"
        extra = [str(first[k]) for k in ("name",) if k in first and first[k] != label.partition(":")[0]]
        extra += [f"{first['memory_gib']} GiB"] if "memory_gib" in first else []
        extra += [f"{first['threads']} threads"] if "threads" in first else []
        parts.append(label + (f" ({', '.join(extra)})" if extra else ""))
        run.clear()

    for d in devices:
        kind, _, idx = d["device"].partition(":")
        if run:
            prev_kind, _, prev_idx = run[-1]["device"].partition(":")
            same = {k: v for k, v in d.items() if k != "device"} == {k: v for k, v in run[-1].items() if k != "device"}
            if same and kind == prev_kind and idx.isdigit() and prev_idx.isdigit() and int(idx) == int(prev_idx) + 1:
                run.append(d)
                continue
        flush()
        run.append(d)
    flush()
    return ", ".join(parts) or "(none)"


# ------------------------------------------------------------------ collection
def _owner(name: str) -> str | None:
    from ..plugins import plugin_manager

    for info in plugin_manager().infos.values():
        if name in info.backends:
            return info.name
    return None


def collect(names: list[str] | None = None, devices: bool = True) -> list[dict[str, Any]]:
    """One dict per backend: registered ones, and the shipped backends that are not installed."""
    from ..errors import BackendNotInstalledError
    from ..plugins import plugin_manager

    pm = plugin_manager()
    registered = pm.backend_names()
    wanted = sorted(set(registered) | set(SHIPPED_BACKENDS)) if not names else list(names)
    unknown = [n for n in wanted if n not in registered and n not in SHIPPED_BACKENDS and pm.infos.get(n) is None]
    if unknown:
        raise CLIError(f"no backend named {', '.join(map(repr, unknown))}; installed backends: {registered}")
    dists = plugin_distributions()
    out = []
    for name in wanted:
        owner = _owner(name)
        dist = dists.get(owner, (None, None))[0] if owner else SHIPPED_BACKENDS.get(name)
        entry: dict[str, Any] = {
            "name": name,
            "status": "ok",
            "reason": None,
            "distribution": dist,
            "version": version_of(dist) if dist else None,
            "class": None,
            "dtypes": [],
            "supports_jit": None,
            "devices": None,
        }
        try:
            cls = pm.backend_class(name)
        except BackendNotInstalledError as e:
            info = pm.infos.get(owner or name)
            if name not in registered and (info is None or info.status == "loaded"):
                entry["status"] = "not installed"
                entry["reason"] = install_hint(SHIPPED_BACKENDS[name])
                entry["version"] = None
            else:
                entry["status"] = "disabled" if info is not None and info.status == "disabled" else "failed"
                entry["reason"] = str(e)
            out.append(entry)
            continue
        dist = getattr(cls, "distribution", "") or dist
        entry.update(
            {
                "distribution": dist,
                "version": version_of(dist) if dist else None,
                "class": f"{cls.__module__}.{cls.__qualname__}",
                "dtypes": [getattr(d, "value", str(d)) for d in getattr(cls, "supported_dtypes", ())],
                "supports_jit": bool(getattr(cls, "supports_jit", False)),
            }
        )
        if devices:
            try:
                entry["devices"] = devices_of(cls)
            except Exception as e:
                entry["devices"] = []
                entry["reason"] = f"listing devices failed: {type(e).__name__}: {e}"
        out.append(entry)
    return out


def render(entries: list[dict[str, Any]], devices: bool = True) -> str:
    rows = []
    for e in entries:
        dist = f"{e['distribution']} {e['version']}" if e["version"] else (e["distribution"] or "-")
        if e["status"] == "ok":
            row = [e["name"], e["status"], dist, ", ".join(e["dtypes"]), "yes" if e["supports_jit"] else "no"]
            if devices:
                row.append(devices_text(e["devices"]))
        else:
            row = [e["name"], e["status"], dist, "-", "-"] + (["-"] if devices else [])
        rows.append(row)
    header = ["backend", "status", "distribution", "dtypes", "jit"] + (["devices"] if devices else [])
    notes = [f"{e['name']}: {e['reason']}" for e in entries if e["reason"]]
    return table(rows, header) + ("\n\n" + "\n".join(notes) if notes else "")


def run(args: argparse.Namespace) -> int:
    entries = collect(args.names or None, devices=not args.no_devices)
    if args.json:
        print_json(entries)
    else:
        print(render(entries, devices=not args.no_devices))
    return 0
