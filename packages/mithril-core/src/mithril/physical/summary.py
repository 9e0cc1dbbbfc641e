"""Readable summaries of logical and physical models."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .._text import fmt_shape as _fmt
from .._text import table as _table
from ..ir.passes.shape_inference import solve
from .memory import estimate, float_bytes_of

if TYPE_CHECKING:  # pragma: no cover
    from .model import PhysicalModel


def physical_summary(pm: PhysicalModel, max_depth: int = 0) -> str:
    """Top-level blocks with concrete (or symbolic) output shapes and parameter counts."""
    flat = pm._flat_for(pm.training)
    terms = solve(flat, pm._known_shapes())
    try:
        pshapes = pm.param_shapes
    except Exception:
        pshapes = {}
    by_value = {v.uid: k for k, v in {**flat.graph.params, **flat.graph.state}.items()}
    rows = []
    model = pm.model
    state = set(pm.state_keys)
    for path, block in model.iter_blocks():
        depth = path.count(".")
        if depth > max_depth:
            continue
        outs = []
        for t in block.output_terminals():
            v = flat.conn_values.get(id(block._binding[t]))
            outs.append(_fmt(terms[v.uid].shape.to_list()) if v is not None and v.uid in terms else "?")
        # params consumed by this block: those bound to its input terminals
        own = []
        for t in block.input_terminals():
            v = flat.conn_values.get(id(block._binding[t]))
            if v is not None and v.uid in by_value:
                own.append(by_value[v.uid])
        n = sum(math.prod(pshapes[k]) for k in own if k in pshapes and k not in state)
        rows.append(
            (
                "  " * depth + path.split(".")[-1],
                type(block).__name__,
                ", ".join(outs),
                f"{n:,}" if own and pshapes else "-",
            )
        )
    shapes = pm.shapes
    lines = [f"Physical model for {pm.backend!r}"]
    lines.append("inputs:  " + ", ".join(f"{k} {_fmt(shapes.get(k))}" for k in pm.input_keys))
    lines.append("outputs: " + ", ".join(f"{k} {_fmt(shapes.get(k))}" for k in pm.output_keys))
    lines += ["", _table(rows, ("block", "type", "output shape", "params")), ""]
    if pshapes:
        trainable = sum(math.prod(s) for k, s in pshapes.items() if k not in state)
        n_state = sum(math.prod(s) for k, s in pshapes.items() if k in state)
        lines.append(f"trainable params: {trainable:,}   state: {n_state:,}")
    else:
        lines.append("parameter shapes unknown until input shapes are given")
    extra = getattr(pm, "_last", None)
    if extra is not None:
        report = estimate(
            extra.graph,
            float_bytes_of(pm.backend),
            kernel_memory=pm.backend.kernel_memory,
            inplace=getattr(extra.executable, "inplace_plan", None),
        )
        what = "with gradients" if extra.graph.gradients else "forward"
        lines.append(
            f"estimated peak memory ({what}): {report.peak / 2**20:.2f} MiB "
            f"(parameters {report.parameters / 2**20:.2f} MiB, kernel workspace {report.workspace / 2**20:.2f} MiB; "
            "memory_report() for details)"
        )
    quantization = getattr(getattr(extra, "executable", None), "quantization_report", None)
    if quantization:
        lines += ["", "quantization:", *(f"  {k}: {v}" for k, v in quantization.items())]
    return "\n".join(lines)
