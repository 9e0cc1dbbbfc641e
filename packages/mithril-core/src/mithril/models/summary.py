"""The logical summary of a model: its blocks and their symbolic output shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._text import fmt_shape, table

if TYPE_CHECKING:  # pragma: no cover
    from .model import Model


def logical_summary(model: Model, max_depth: int = 1) -> str:
    """Blocks (to ``max_depth``) with their symbolic output shapes."""
    rows = []
    for path, block in model.iter_blocks():
        depth = path.count(".")
        if depth > max_depth:
            continue
        outs = [block._binding[t].term.shape.to_list() for t in block.output_terminals()]
        rows.append(("  " * depth + path.split(".")[-1], type(block).__name__, ", ".join(fmt_shape(o) for o in outs)))
    return table(rows, ("block", "type", "output shape"))
