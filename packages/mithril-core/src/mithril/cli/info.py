"""``mithril info``: versions and devices, what a user pastes into a bug report."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from typing import Any

from ._common import LIBRARIES, SHIPPED_BACKENDS, plugin_distributions, print_json, version_of

HELP = "versions of Python, the platform, Mithril, its backends and libraries, and the devices (for bug reports)"

#: environment variables that change what Mithril or a framework does
ENVIRONMENT = (
    "MITHRIL_STRICT_PLUGINS",
    "MITHRIL_DISABLE_PLUGINS",
    "MITHRIL_BACKENDS",
    "CUDA_VISIBLE_DEVICES",
    "XLA_FLAGS",
    "JAX_PLATFORMS",
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("info", help=HELP, description=HELP + ".")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--no-devices", action="store_true", help="skip the device list (which imports torch and jax, a few seconds)"
    )
    p.set_defaults(run=run)


def collect(devices: bool = True) -> dict[str, Any]:
    import mithril

    from . import backends as backends_cmd
    from . import plugins as plugins_cmd

    dists = {d for d, _ in plugin_distributions().values()} | set(SHIPPED_BACKENDS.values())
    data: dict[str, Any] = {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "platform": {"system": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "mithril": {"version": mithril.__version__, "path": os.path.dirname(mithril.__file__ or "")},
        "distributions": {d: version_of(d) for d in sorted(dists)},
        "libraries": {lib: version_of(lib) for lib in LIBRARIES},
        "environment": {k: os.environ[k] for k in ENVIRONMENT if k in os.environ},
        "plugins": [
            {"name": p["name"], "distribution": p["distribution"], "status": p["status"], "reason": p["reason"]}
            for p in plugins_cmd.collect()
        ],
    }
    if devices:
        data["backends"] = {
            e["name"]: {"status": e["status"], "devices": e["devices"], "reason": e["reason"]}
            for e in backends_cmd.collect(devices=True)
        }
    return data


def render(data: dict[str, Any]) -> str:
    from .backends import devices_text

    def versions(table: dict[str, str | None]) -> str:
        return ", ".join(f"{k} {v or 'not installed'}" for k, v in table.items())

    py = data["python"]
    lines = [
        f"Python:        {py['version']} ({py['implementation']}, {py['executable']})",
        f"Platform:      {data['platform']['system']} ({data['platform']['cpus']} CPUs)",
        f"Mithril:       {data['mithril']['version']} ({data['mithril']['path']})",
        f"Distributions: {versions(data['distributions'])}",
        f"Libraries:     {versions(data['libraries'])}",
    ]
    if data["environment"]:
        lines.append(f"Environment:   {', '.join(f'{k}={v}' for k, v in data['environment'].items())}")
    failed = [p for p in data["plugins"] if p["status"] != "loaded"]
    loaded = [p["name"] for p in data["plugins"] if p["status"] == "loaded"]
    lines.append(f"Plugins:       {', '.join(loaded) or '(none)'} loaded")
    for p in failed:
        lines.append(f"               {p['name']} {p['status']}: {p['reason']}")
    if "backends" in data:
        lines.append("Devices:")
        for name, b in data["backends"].items():
            what = devices_text(b["devices"]) if b["status"] == "ok" else b["status"]
            lines.append(f"  {name:<12} {what}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    data = collect(devices=not args.no_devices)
    if args.json:
        print_json(data)
    else:
        print(render(data))
    return 0
