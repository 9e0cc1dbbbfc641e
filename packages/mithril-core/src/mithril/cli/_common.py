"""What the commands share: the user-error exception, JSON and table output, installed distributions."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

#: the backend distributions Mithril ships, by backend name
SHIPPED_BACKENDS = {"numpy": "mithril-numpy", "torch": "mithril-torch", "jax": "mithril-jax", "ggml": "mithril-ggml"}

#: third-party libraries worth naming in a bug report: distribution name -> label
LIBRARIES = ("numpy", "pluggy", "torch", "jax", "jaxlib", "ggml-python", "safetensors", "pytest")


class CLIError(Exception):
    """A mistake of the user's (a missing file, an unknown backend...): one line, exit status 2."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def table(rows: Iterable[Sequence[Any]], header: Sequence[str] | None = None, indent: str = "") -> str:
    """Left-aligned columns; the last column is not padded."""
    rows = [[str(c) for c in row] for row in rows]
    if header is not None:
        rows.insert(0, list(header))
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(len(r) for r in rows))]
    lines = []
    for r in rows:
        cells = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append((indent + "  ".join(cells)).rstrip())
    return "\n".join(lines)


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def version_of(distribution: str) -> str | None:
    """The installed version of a distribution, or None (no import of it)."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def plugin_distributions() -> dict[str, tuple[str, str]]:
    """Entry-point name -> (distribution, version) for every entry point of the ``mithril`` group."""
    try:
        from importlib_metadata import entry_points
    except ImportError:  # pragma: no cover - the core depends on importlib-metadata
        from importlib.metadata import entry_points  # type: ignore[assignment]  # the stdlib twin of the backport

    from ..plugins import ENTRY_POINT_GROUP

    out: dict[str, tuple[str, str]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        out.setdefault(ep.name, (getattr(dist, "name", "?"), getattr(dist, "version", "?")))
    return out


def install_hint(distribution: str) -> str:
    """How to install one of our distributions: by path or from local wheels, never from an index."""
    folder = f"packages/{distribution}"
    return (
        f"install it from a Mithril checkout: `pip install -c constraints.txt -e {folder}`, or from wheels "
        f"built there: `pip install -c constraints.txt --find-links dist {distribution}`"
    )
