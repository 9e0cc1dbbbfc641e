"""``mithril plugins``: every plugin, the distribution it comes from, what it registers, whether it loaded."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import plugin_distributions, print_json, table

HELP = "list installed plugins: distribution, version, what each registers, load status"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("plugins", help=HELP, description=HELP + ". Failed plugins are listed with the reason.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--kernels",
        action="store_true",
        help="also ask every plugin for its kernels for each installed backend (this may import "
        "torch or jax, as a plugin's kernel hook does)",
    )
    p.set_defaults(run=run)


def collect(kernels: bool = False) -> list[dict[str, Any]]:
    """One dict per plugin the manager knows, sorted by distribution and name."""
    from ..plugins import plugin_manager

    pm = plugin_manager()
    pm.load_entry_points()
    if kernels:
        for name in pm.backend_names():
            pm.kernels_for(name)
    dists = plugin_distributions()
    out = []
    for info in sorted(pm.infos.values(), key=lambda i: i.name):
        dist, version = dists.get(info.name, (None, None)) if info.source.startswith("entry point") else (None, None)
        out.append(
            {
                "name": info.name,
                "distribution": dist,
                "version": version,
                "source": info.source,
                "status": info.status,
                "reason": info.reason or None,
                "backends": list(info.backends),
                "primitives": list(info.primitives),
                "kernels": list(info.kernels) if kernels else None,
            }
        )
    out.sort(key=lambda d: (d["distribution"] or "", d["name"]))
    return out


def describe(entry: dict[str, Any]) -> str:
    """What a loaded plugin provides, or why it is not loaded."""
    parts = [f"{what}: {', '.join(entry[what])}" for what in ("backends", "primitives", "kernels") if entry[what]]
    if entry["status"] != "loaded":
        return str(entry["reason"] or entry["status"])
    if entry["reason"]:  # a lazily registered backend that failed to import later
        parts.append(entry["reason"])
    return "; ".join(parts) or "(registers nothing)"


def render(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "no plugins installed (the backends are distributions such as mithril-numpy; see `mithril info`)"
    rows = [
        (e["distribution"] or e["source"], e["version"] or "-", e["name"], e["status"], describe(e)) for e in entries
    ]
    counts: dict[str, int] = {}
    for e in entries:
        counts[e["status"]] = counts.get(e["status"], 0) + 1
    order = {"loaded": 0, "failed": 1, "disabled": 2}
    tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: order.get(kv[0], 3)))
    return (
        table(rows, ("distribution", "version", "plugin", "status", "provides / reason"))
        + f"\n\n{len(entries)} plugins: {tally}"
    )


def run(args: argparse.Namespace) -> int:
    entries = collect(kernels=args.kernels)
    if args.json:
        print_json(entries)
    else:
        print(render(entries))
    return 0
