"""``mithril summary FILE``: what a ``.safetensors`` or ``.gguf`` file holds, from its header only."""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from typing import Any

from ..headers import FileHeader, HeaderError, read_header
from ._common import CLIError, human_bytes, print_json, table

HELP = "names, shapes, dtypes and metadata of a .safetensors or .gguf file (reads the header only)"

#: metadata values longer than this are shortened in the text output (not in --json)
SHORT = 72


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "summary",
        help=HELP,
        description=HELP + ". Nothing is loaded: a multi-GB checkpoint is summarised in milliseconds.",
    )
    p.add_argument("file", metavar="FILE", help="a .safetensors or .gguf file")
    p.add_argument("--json", action="store_true", help="print JSON (metadata values in full)")
    p.add_argument("--full", action="store_true", help="do not shorten long metadata values")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="list at most N tensors")
    p.set_defaults(run=run)


def _param_names(header: FileHeader) -> dict[str, str]:
    """Tensor name -> param name, for a GGUF written by mithril-ggml (its storage plan is in the metadata)."""
    plan = header.metadata.get("mithril.params")
    if header.format != "gguf" or not isinstance(plan, str):
        return {}
    try:
        return {e["tensor"]: e["name"] for e in json.loads(plan) if isinstance(e, dict) and "tensor" in e}
    except (ValueError, TypeError, KeyError):
        return {}


def as_dict(header: FileHeader) -> dict[str, Any]:
    names = _param_names(header)
    tensors = []
    for t in header.tensors:
        entry = {
            "name": t.name,
            "dtype": t.dtype,
            "shape": list(t.shape),
            "parameters": t.numel,
            "bytes": t.nbytes,
            "offset": t.offset,
        }
        if t.name in names:
            entry["param"] = names[t.name]
        tensors.append(entry)
    by_dtype: dict[str, dict[str, int]] = {}
    for t in header.tensors:
        d = by_dtype.setdefault(t.dtype, {"tensors": 0, "parameters": 0, "bytes": 0})
        d["tensors"] += 1
        d["parameters"] += t.numel
        d["bytes"] += t.nbytes or 0
    out: dict[str, Any] = {
        "path": header.path,
        "format": header.format,
        "version": header.version,
        "file_size": header.file_size,
        "header_size": header.header_size,
        "tensor_count": len(header.tensors),
        "total_parameters": sum(t.numel for t in header.tensors),
        "total_bytes": sum(t.nbytes or 0 for t in header.tensors),
        "dtypes": by_dtype,
        "metadata": header.metadata,
        "tensors": tensors,
    }
    if header.format == "gguf":
        out["metadata_types"] = header.extra.get("metadata_types", {})
        out["alignment"] = header.extra.get("alignment")
    return out


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _short(value: Any, full: bool) -> str:
    """A metadata value on one line, shortened unless ``full``."""
    if isinstance(value, list) and not full:
        items = ", ".join(_short(v, False) for v in value[:4])
        return f"[{items}{', ...' if len(value) > 4 else ''}] ({len(value):,} items)"
    text = value.replace("\n", "\\n") if isinstance(value, str) else json.dumps(value)
    if full or len(text) <= SHORT:
        return text
    return f"{text[: SHORT - 12]}... ({len(text):,} characters)"


def render(header: FileHeader, full: bool = False, limit: int | None = None) -> str:
    d = as_dict(header)
    kind = f"GGUF v{header.version}" if header.format == "gguf" else "safetensors"
    lines = [
        f"{os.path.basename(header.path)}: {kind}, {_n(d['tensor_count'], 'tensor')}, "
        f"{d['total_parameters']:,} parameters, {human_bytes(d['total_bytes'])} of tensor data "
        f"(file {human_bytes(header.file_size)}, header {header.header_size:,} bytes)"
    ]
    if header.metadata:
        types = d.get("metadata_types", {})
        lines.append("")
        lines.append(f"metadata ({_n(len(header.metadata), 'key')}):")
        rows = [(k, types[k], _short(v, full)) if types else (k, _short(v, full)) for k, v in header.metadata.items()]
        lines.append(table(rows, indent="  "))
    else:
        lines.append("")
        lines.append("metadata: (none)")
    if d["tensors"]:
        shown = d["tensors"] if limit is None else d["tensors"][:limit]
        has_param = any("param" in t for t in shown)
        tensor_rows = []
        for t in shown:
            row = [
                t["name"],
                t["dtype"],
                str(t["shape"]),
                f"{t['parameters']:,}",
                human_bytes(t["bytes"]) if t["bytes"] is not None else "?",
            ]
            if has_param:
                row.append(t.get("param", ""))
            tensor_rows.append(row)
        header_row = ["tensor", "dtype" if header.format == "safetensors" else "type", "shape", "parameters", "bytes"]
        lines.append("")
        lines.append(table(tensor_rows, header_row + (["param"] if has_param else [])))
        if len(shown) < len(d["tensors"]):
            lines.append(f"... and {len(d['tensors']) - len(shown)} more tensors (--limit)")
    lines.append("")
    by = Counter({k: v["parameters"] for k, v in d["dtypes"].items()})
    lines.append(
        "by "
        + ("dtype" if header.format == "safetensors" else "type")
        + ": "
        + ", ".join(
            f"{k} {_n(d['dtypes'][k]['tensors'], 'tensor')} / {n:,} parameters / {human_bytes(d['dtypes'][k]['bytes'])}"
            for k, n in by.most_common()
        )
        if by
        else "no tensors"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    path = args.file
    if args.limit is not None and args.limit < 0:
        raise CLIError("--limit must be 0 or more")
    if not os.path.exists(path):
        raise CLIError(f"no such file: {path}")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a folder, not a .safetensors or .gguf file")
    try:
        header = read_header(path)
    except HeaderError as e:
        raise CLIError(f"{path}: {e}") from None
    except OSError as e:
        raise CLIError(f"cannot read {path}: {e.strerror or e}") from None
    if args.json:
        print_json(as_dict(header))
    else:
        print(render(header, full=args.full, limit=args.limit))
    return 0
