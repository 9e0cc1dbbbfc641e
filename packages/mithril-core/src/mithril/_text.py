"""Plain-text tables for the summaries of logical and physical models."""

from __future__ import annotations

from collections.abc import Sequence


def table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """``rows`` under ``header``, columns padded to their widest cell, a dashed rule below the header."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)])


def fmt_shape(shape: object) -> str:
    """``[2, 3]`` for a list or tuple of dimensions (symbols print as themselves); anything else as ``str``."""
    return "[" + ", ".join(str(d) for d in shape) + "]" if isinstance(shape, (list, tuple)) else str(shape)
